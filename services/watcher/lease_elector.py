"""The decisions of leader election on a Lease, without any I/O (client-go's ``LeaderElector``).

:mod:`services.watcher.leader_election` reads and writes the Lease; this class decides what to
write and whether this process leads, from what was read and the local monotonic clock:

* **Expiry as observed.** A candidate never compares the Lease's ``renewTime`` (another
  machine's clock) with its own clock. It remembers when it last *saw the record change* and
  takes the Lease only once it has stayed unchanged for ``leaseDurationSeconds`` from then
  (client-go's ``observedTime``), or at once when nobody holds it (released).
* **Renew deadline.** A leader leads until ``renew deadline`` after the *start* of its last
  successful write. The start, not the answer: the others' expiry counts from when they saw the
  write, which is later still, so this process stops leading strictly before anyone else may
  begin (``renew deadline < lease duration`` is the margin). The publisher asks
  :meth:`leads_at` before every record, so a leader that stalled stops publishing by itself,
  even before this thread gets to run again.
* **Epochs.** Every new term writes ``leaseTransitions + 1`` and the term's records carry that
  number (the leader epoch), so a reader can drop what an older term still sends. Unlike
  client-go, a process that re-acquires after losing its own term counts a new transition too:
  records of its previous term may still be in flight. A Lease this elector creates starts at
  :func:`first_epoch`, not 0, so that a Lease deleted and created again does not go back to
  epochs the readers already saw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

EPOCH_ORIGIN = datetime(2025, 1, 1, tzinfo=UTC)


def first_epoch(wall: datetime) -> int:
    """The ``leaseTransitions`` of a Lease created now: whole seconds since 2025-01-01 UTC.

    Readers fence by epoch: the differ drops a record whose epoch is below the highest it saw
    for the Lease. A Lease deleted and re-created (by hand, with its namespace) that restarted
    at 0 would have every record of its terms dropped as a deposed leader's until the count
    passed the old one. Starting from the clock instead, the new Lease's epochs are above the
    old one's as long as that Lease saw fewer transitions than seconds passed since it was
    created (a term lasts at least a retry period) and the creating clocks agree to within the
    time between deletion and re-creation. ``leaseTransitions`` is an int32: this lasts
    until 2093.
    """
    return max(0, int((wall - EPOCH_ORIGIN).total_seconds()))


@dataclass(frozen=True)
class ElectionTiming:
    lease_duration_s: int
    renew_deadline_s: float
    retry_period_s: float


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of ``coordination.k8s.io/v1`` Lease ``spec`` that the election uses."""

    holder: str | None
    lease_duration_s: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int


class LeaseElector:
    def __init__(self, identity: str, timing: ElectionTiming) -> None:
        self.identity = identity
        self.timing = timing
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading_until: float | None = None
        self.epoch: int | None = None
        """The leader epoch (``leaseTransitions``) of the current term; None while a candidate."""

    # -- what was read -------------------------------------------------------------------------

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """The record as just read; the observation clock restarts only when it changed."""
        if record != self._observed:
            self._observed = record
            self._observed_at = now

    @property
    def observed(self) -> LeaseRecord | None:
        return self._observed

    def held_by_other(self) -> bool:
        record = self._observed
        return record is not None and bool(record.holder) and record.holder != self.identity

    def may_acquire(self, now: float) -> bool:
        """The observed Lease is free, ours, or unchanged for its whole duration."""
        record = self._observed
        if record is None or not record.holder or record.holder == self.identity:
            return True
        return now >= self._observed_at + record.lease_duration_s

    # -- what to write -------------------------------------------------------------------------

    def plan(self, now: float, wall: datetime) -> LeaseRecord | None:
        """The record to write (create when nothing was observed, else update), or None."""
        if not self.may_acquire(now):
            return None
        duration = self.timing.lease_duration_s
        record = self._observed
        if record is None:
            return LeaseRecord(self.identity, duration, wall, wall, first_epoch(wall))
        if self.epoch is not None and record.holder == self.identity:
            return replace(record, lease_duration_s=duration, renew_time=wall)
        return LeaseRecord(self.identity, duration, wall, wall, record.transitions + 1)

    def written(self, record: LeaseRecord, started_at: float, now: float) -> bool:
        """A write of ours succeeded; True when it begins a new term.

        A write whose deadline already passed (the process stalled between request and answer)
        extends nothing: the next round writes again."""
        self.observe(record, now)
        until = started_at + self.timing.renew_deadline_s
        if now >= until:
            return False
        new_term = self.epoch is None
        self.epoch = record.transitions
        self._leading_until = until
        return new_term

    # -- whether we lead -----------------------------------------------------------------------

    @property
    def leading_until(self) -> float | None:
        """The monotonic instant the current term ends unless renewed; None as a candidate."""
        return self._leading_until

    def leads_at(self, now: float) -> bool:
        until = self._leading_until
        return until is not None and now < until

    @property
    def in_term(self) -> bool:
        return self.epoch is not None

    def must_stop(self, now: float) -> str | None:
        """Why the current term is over (renew deadline passed, Lease taken), else None."""
        if self.epoch is None:
            return None
        if self.held_by_other():
            return "lease held by another watcher"
        if not self.leads_at(now):
            return "lease not renewed within the renew deadline"
        return None

    def stop(self) -> None:
        self.epoch = None
        self._leading_until = None

    def release(self, wall: datetime) -> LeaseRecord | None:
        """client-go's ReleaseOnCancel: the record that frees the Lease at once, if we lead."""
        record = self._observed
        if self.epoch is None or record is None or record.holder != self.identity:
            return None
        self.stop()
        return LeaseRecord(None, 1, wall, wall, record.transitions)
