"""The leader election's decisions (:class:`LeaseElector`), on a fake monotonic clock.

No API server here: the records are what a Lease read would return, the times are what
``time.monotonic()`` would say. Each case is one rule of client-go's ``LeaderElector`` (or of
where this elector deliberately differs: a new term always counts a transition).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.watcher.lease_elector import (
    ElectionTiming,
    LeaseElector,
    LeaseRecord,
    first_epoch,
)

TIMING = ElectionTiming(lease_duration_s=15, renew_deadline_s=10.0, retry_period_s=2.0)
WALL = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def elector(identity: str = "me") -> LeaseElector:
    return LeaseElector(identity, TIMING)


def held_by(holder: str | None, transitions: int = 3, renewed: int = 0) -> LeaseRecord:
    at = WALL + timedelta(seconds=renewed)
    return LeaseRecord(holder, 15, WALL, at, transitions)


def acquire(e: LeaseElector, record: LeaseRecord | None, now: float) -> LeaseRecord:
    e.observe(record, now)
    planned = e.plan(now, WALL)
    assert planned is not None
    e.written(planned, now, now + 0.01)
    return planned


def test_no_lease_is_created_with_the_seconds_since_2025_as_its_epoch() -> None:
    e = elector()
    e.observe(None, 100.0)
    planned = e.plan(100.0, WALL)
    seconds = int((WALL - datetime(2025, 1, 1, tzinfo=UTC)).total_seconds())
    assert planned == LeaseRecord("me", 15, WALL, WALL, seconds)
    assert e.written(planned, 100.0, 100.1) is True
    assert e.epoch == seconds
    assert e.leads_at(100.1)


def test_a_lease_deleted_under_its_leader_comes_back_with_a_higher_epoch() -> None:
    """Deleted and created again a minute later, after ten terms: every epoch of the new Lease
    is above every epoch of the old, so the differ's fence keeps admitting the leader."""
    e = elector()
    e.observe(None, 100.0)
    created = e.plan(100.0, WALL)
    assert created is not None
    e.written(created, 100.0, 100.1)
    old_epoch = created.transitions + 10
    e.observe(None, 160.0)  # the leader's next read: 404
    again = e.plan(160.0, WALL + timedelta(seconds=60))
    assert again is not None
    assert again.transitions > old_epoch
    e.written(again, 160.0, 160.1)
    assert e.epoch == again.transitions
    assert first_epoch(datetime(2093, 1, 1, tzinfo=UTC)) < 2**31  # leaseTransitions: int32


def test_a_free_lease_is_taken_at_once_and_counts_a_transition() -> None:
    e = elector()
    planned = acquire(e, held_by(None, transitions=4), 50.0)
    assert planned.holder == "me"
    assert planned.transitions == 5
    assert e.epoch == 5


def test_a_held_lease_is_not_taken_before_it_stayed_unchanged_for_its_duration() -> None:
    e = elector()
    e.observe(held_by("other"), 100.0)
    assert e.plan(100.0, WALL) is None
    e.observe(held_by("other"), 114.9)  # the same record: the observation clock keeps running
    assert e.plan(114.9, WALL) is None
    e.observe(held_by("other"), 115.0)
    planned = e.plan(115.0, WALL)
    assert planned is not None
    assert (planned.holder, planned.transitions) == ("me", 4)


def test_expiry_is_observed_locally_never_read_from_the_remote_timestamps() -> None:
    """A renewTime far in the past (another clock) does not make the lease expired: only
    seeing it unchanged for the lease duration does; each renewal restarts the wait."""
    e = elector()
    stale = LeaseRecord("other", 15, WALL - timedelta(days=1), WALL - timedelta(days=1), 3)
    e.observe(stale, 100.0)
    assert e.plan(100.0, WALL) is None
    e.observe(held_by("other", renewed=2), 110.0)  # renewed: observed anew at 110
    assert e.plan(124.0, WALL) is None
    e.observe(held_by("other", renewed=2), 125.0)
    assert e.plan(125.0, WALL) is not None


def test_a_leader_renews_keeping_its_epoch_and_acquire_time() -> None:
    e = elector()
    first = acquire(e, held_by(None, transitions=1), 10.0)
    e.observe(first, 12.0)
    renewal = e.plan(12.0, WALL + timedelta(seconds=2))
    assert renewal is not None
    assert renewal.transitions == first.transitions == 2
    assert renewal.acquire_time == first.acquire_time
    assert renewal.renew_time == WALL + timedelta(seconds=2)
    assert e.written(renewal, 12.0, 12.05) is False  # the same term goes on
    assert e.leads_at(21.9)
    assert not e.leads_at(22.0)


def test_the_term_ends_at_the_renew_deadline_counted_from_the_last_successful_write() -> None:
    e = elector()
    acquire(e, None, 10.0)  # written at 10.0, the start of the request
    assert e.must_stop(19.9) is None
    assert e.must_stop(20.0) == "lease not renewed within the renew deadline"
    e.stop()
    assert e.epoch is None
    assert not e.leads_at(10.5)


def test_a_write_that_returns_after_the_deadline_extends_nothing() -> None:
    """Paused between request and answer: the write succeeded but the term must not go on."""
    e = elector()
    e.observe(None, 10.0)
    planned = e.plan(10.0, WALL)
    assert planned is not None
    assert e.written(planned, 10.0, 30.0) is False
    assert e.epoch is None
    assert not e.leads_at(30.0)


def test_a_lease_seen_held_by_another_ends_the_term_at_once() -> None:
    e = elector()
    acquire(e, None, 10.0)
    e.observe(held_by("other", transitions=1), 12.0)
    assert e.must_stop(12.0) == "lease held by another watcher"


def test_re_acquiring_after_losing_the_own_term_counts_a_new_epoch() -> None:
    """client-go would keep the count when the lease still names us; records of the ended
    term may still be in flight, so the new term needs a higher epoch to fence them."""
    e = elector()
    first = acquire(e, held_by(None, transitions=7), 10.0)
    e.stop()  # renew deadline passed
    e.observe(first, 25.0)
    again = e.plan(25.0, WALL)
    assert again is not None
    assert (first.transitions, again.transitions) == (8, 9)


def test_release_clears_the_holder_and_expires_the_lease_at_once() -> None:
    e = elector()
    first = acquire(e, held_by(None, transitions=2), 10.0)
    released = e.release(WALL)
    assert released == LeaseRecord(None, 1, WALL, WALL, first.transitions)
    assert e.epoch is None
    assert not e.leads_at(10.1)
    standby = elector("standby")
    standby.observe(released, 11.0)
    taken = standby.plan(11.0, WALL)
    assert taken is not None
    assert (taken.holder, taken.transitions) == ("standby", 4)


def test_a_candidate_has_nothing_to_release() -> None:
    e = elector()
    e.observe(held_by("other"), 10.0)
    assert e.release(WALL) is None
