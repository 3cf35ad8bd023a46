"""When the local state of a partition the differ no longer owns is dropped."""

from __future__ import annotations

from services.differ.unowned_state import UnownedState


def test_state_unowned_for_the_delay_is_due_once() -> None:
    unowned = UnownedState(delay_s=600)
    unowned.unowned([2, 0], now=1000)
    unowned.unowned([1], now=1300)
    assert unowned.due(now=1599) == []
    assert unowned.due(now=1600) == [0, 2]
    assert unowned.partitions() == {1}
    assert unowned.due(now=1600) == []  # told once: the caller dropped them
    assert unowned.due(now=1900) == [1]


def test_a_partition_assigned_again_keeps_its_state() -> None:
    unowned = UnownedState(delay_s=600)
    unowned.unowned([0, 1], now=1000)
    unowned.owned([0])
    assert unowned.due(now=5000) == [1]
    # Revoked again later: the delay counts from then, not from the first revocation.
    unowned.unowned([0], now=6000)
    assert unowned.due(now=6599) == []
    assert unowned.due(now=6600) == [0]


def test_a_second_revocation_does_not_restart_the_delay() -> None:
    # Found on disk at start, then revoked by a rebalance that never assigned it: still the
    # first time counts, or a busy group would keep the state for ever.
    unowned = UnownedState(delay_s=600)
    unowned.unowned([3], now=1000)
    unowned.unowned([3], now=1500)
    assert unowned.due(now=1600) == [3]
