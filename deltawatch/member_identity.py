"""Kafka member ids that survive a restart but are never shared by two live processes.

The differ and the notifier each use one id as both ``transactional.id`` and static
``group.instance.id``. Reusing the id after a crash is what makes recovery fast: the restarted
process's ``init_transactions`` aborts its predecessor's open transaction at once (otherwise
every ``read_committed`` reader downstream waits for the transaction timeout), and the group
hands it the predecessor's partitions without a rebalance or a session timeout. Sharing the id
with a *live* process is the opposite: whichever starts second fences the first.

So the id is claimed, not just derived:

* **On one host**, each id is an advisory ``flock`` on a file in a shared lock directory. The
  lock dies with its process (even on SIGKILL), so a restarted process finds its old id free
  and takes it again, while a second replica on the same host finds it held and takes the
  next slot (``<base>-1``, ``<base>-2`` …) — or, for an explicitly configured id, refuses.
* **Across hosts** a lock cannot tell, but the consumer group can: every member's ``client.id``
  carries the host it runs on (:func:`member_client_id`). A member holding our id from another
  host is a live peer if it is still in the group after its session timeout (a dead one's
  session expires by then); :func:`peers_elsewhere` picks those members out of a group
  description, and the worker refuses to start while one is alive.

A static member that rejoins is handed its previous assignment without a rebalance, even when
it now subscribes to other topics (seen with Kafka 4.1 and librdkafka 2.16): a worker restarted
with new topics but its old group and id would own the old topics' partitions and process
nothing. :func:`refuse_foreign_assignment` turns that silence into one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_SLOTS = 64
_HOST_SEPARATOR = "@"


class IdentityInUse(RuntimeError):
    """The configured id is held by another live process; starting would fence it."""


@dataclass(frozen=True)
class GroupMember:
    """What a group description says about one member."""

    member_id: str
    instance_id: str | None
    client_id: str


@dataclass
class ClaimedIdentity:
    """An id and the lock that keeps it ours until this process ends."""

    id: str
    _lock_fd: int | None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


class ForeignAssignment(Exception):
    """The group assigned partitions of topics this member does not subscribe to."""


def refuse_foreign_assignment(
    assigned: Iterable[str], subscribed: Iterable[str], group_setting: str
) -> None:
    """Raise :class:`ForeignAssignment` when ``assigned`` (the topics of an assignment) holds a
    topic outside ``subscribed``; ``group_setting`` names the variable that sets the group."""
    foreign = sorted(set(assigned) - set(subscribed))
    if foreign:
        raise ForeignAssignment(
            f"the group assigned partitions of {', '.join(foreign)}, not of "
            f"{', '.join(sorted(set(subscribed)))}: its static member still holds the "
            f"assignment of the topics this member read before; set a new {group_setting} "
            "together with new topics"
        )


def host_name() -> str:
    """The host (pod) this process runs on: ``HOSTNAME`` as containers set it, else the kernel's."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def member_client_id(client_id: str) -> str:
    """``client.id`` with the host appended, so peers can tell where a member runs."""
    return f"{client_id}{_HOST_SEPARATOR}{host_name()}"


def host_of(client_id: str) -> str | None:
    _, separator, host = client_id.rpartition(_HOST_SEPARATOR)
    return host if separator and host else None


def peers_elsewhere(
    members: Iterable[GroupMember], instance_id: str, own_host: str
) -> list[GroupMember]:
    """Members holding ``instance_id`` that did not start on ``own_host``.

    A member on this host holding our id is our dead predecessor (we hold the id's lock, so no
    live process here does). A member whose ``client.id`` names no host was started by a
    release before ids were claimed: it is taken over as that release did, by fencing it.
    """
    return [
        member
        for member in members
        if member.instance_id == instance_id
        and (host := host_of(member.client_id)) is not None
        and host != own_host
    ]


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "deltawatch-ids"


def claim_identity(base: str, explicit: str | None, lock_dir: Path) -> ClaimedIdentity:
    """The explicit id if free on this host, else the first free slot of ``base``.

    Raises :class:`IdentityInUse` when ``explicit`` is held by a live process on this host.
    Without a usable lock directory the id is taken unlocked (as before ids were claimed).
    """
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            lock_dir.chmod(0o1777)  # shared by every user's workers, as /tmp is
    except OSError:
        return ClaimedIdentity(explicit or base, None)
    if explicit:
        fd = _try_lock(lock_dir, explicit)
        if fd is None:
            raise IdentityInUse(
                f"DELTAWATCH_TRANSACTIONAL_ID={explicit} is in use by another process on this "
                f"host ({_holder(lock_dir, explicit)}); give each replica its own id"
            )
        return ClaimedIdentity(explicit, fd)
    for slot in range(MAX_SLOTS):
        candidate = base if slot == 0 else f"{base}-{slot}"
        fd = _try_lock(lock_dir, candidate)
        if fd is not None:
            return ClaimedIdentity(candidate, fd)
    raise IdentityInUse(f"all {MAX_SLOTS} ids {base}[-N] are in use on this host")


def _lock_path(lock_dir: Path, member_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in member_id)
    if safe != member_id:  # two ids must never share a lock file
        safe += "-" + hashlib.sha256(member_id.encode()).hexdigest()[:12]
    return lock_dir / f"{safe}.lock"


def _try_lock(lock_dir: Path, member_id: str) -> int | None:
    path = _lock_path(lock_dir, member_id)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: a read descriptor can still lock
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    return fd


def _holder(lock_dir: Path, member_id: str) -> str:
    try:
        pid = _lock_path(lock_dir, member_id).read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "a process of another user"
