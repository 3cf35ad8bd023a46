"""Claiming a worker's Kafka member id at start, before it can fence anyone.

:func:`claim_member` is what the differ and the notifier call before ``init_transactions``: it
claims the id on this host (:func:`deltawatch.member_identity.claim_identity`), then asks the
group whether a member on another host holds it. Such a member is watched for one session
timeout: a crashed one leaves the group by then and the claim goes ahead; one still there is a
live peer, and the claim fails with :class:`~deltawatch.member_identity.IdentityInUse` instead
of killing it. The common cases pay nothing: a first start or a restart on the same host finds
no member elsewhere.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from deltawatch.kafka_clients import make_admin, session_timeout_s
from deltawatch.logs import get_logger
from deltawatch.member_identity import (
    ClaimedIdentity,
    GroupMember,
    IdentityInUse,
    claim_identity,
    default_lock_dir,
    host_name,
    peers_elsewhere,
)
from deltawatch.settings import CommonSettings

log = get_logger("deltawatch.member")

QUERY_TIMEOUT_S = 10.0


def describe_members(
    admin: AdminClient, group_id: str, stop_requested: Callable[[], bool] = lambda: False
) -> list[GroupMember]:
    """The group's current members; none when the group does not exist (yet).

    A coordinator that does not answer (a broker starting, its group metadata loading) is
    asked again until it does: starting without knowing could fence a live peer.
    """
    delay = 0.5
    while True:
        future = admin.describe_consumer_groups([group_id], request_timeout=QUERY_TIMEOUT_S)
        try:
            description = future[group_id].result(timeout=QUERY_TIMEOUT_S + 5)
            break
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return []
            reason = str(exc)
        except concurrent.futures.TimeoutError:
            reason = f"no answer within {QUERY_TIMEOUT_S + 5:g}s"
        if stop_requested():
            return []
        log.warning("group not described yet; asking again", group=group_id, error=reason)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    return [
        GroupMember(member.member_id, member.group_instance_id, member.client_id)
        for member in description.members
    ]


def claim_worker_member(
    settings: CommonSettings,
    group_id: str,
    *,
    base: str,
    explicit: str | None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> ClaimedIdentity:
    """:func:`claim_member` with the worker's settings: its broker, session timeout, lock dir."""
    return claim_member(
        make_admin(settings),
        group_id,
        base=base,
        explicit=explicit,
        lock_dir=default_lock_dir(),
        session_timeout_s=session_timeout_s(settings),
        stop_requested=stop_requested,
    )


def claim_member(
    admin: AdminClient,
    group_id: str,
    *,
    base: str,
    explicit: str | None,
    lock_dir: Path,
    session_timeout_s: float,
    stop_requested: Callable[[], bool] = lambda: False,
) -> ClaimedIdentity:
    """This process's member id; raises :class:`IdentityInUse` when a live peer holds it."""
    identity = claim_identity(base, explicit, lock_dir)
    try:
        _wait_out_peers_elsewhere(admin, group_id, identity.id, session_timeout_s, stop_requested)
    except BaseException:
        identity.release()
        raise
    return identity


def _wait_out_peers_elsewhere(
    admin: AdminClient,
    group_id: str,
    member_id: str,
    session_timeout_s: float,
    stop_requested: Callable[[], bool],
) -> None:
    own_host = host_name()
    first = peers_elsewhere(describe_members(admin, group_id, stop_requested), member_id, own_host)
    if not first:
        return
    log.warning(
        "member id held on another host; waiting one session timeout to see if it is alive",
        member=member_id,
        held_by=[peer.client_id for peer in first],
        session_timeout_s=session_timeout_s,
    )
    watched = {peer.member_id for peer in first}
    deadline = time.monotonic() + session_timeout_s + 2.0
    while not stop_requested():
        members = describe_members(admin, group_id, stop_requested)
        current = peers_elsewhere(members, member_id, own_host)
        alive = [peer for peer in current if peer.member_id in watched]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise IdentityInUse(
                f"member id {member_id} is held by a live member of group {group_id} "
                f"({alive[0].client_id}); give each replica its own DELTAWATCH_TRANSACTIONAL_ID"
            )
        time.sleep(1.0)
