"""The pure part of the compacted-table reader: positions against targets."""

from __future__ import annotations

import pytest

from deltawatch.compacted_table import Positions


@pytest.mark.parametrize(
    ("positions", "targets", "expected"),
    [
        ({}, {}, True),
        ({}, {0: 0, 1: 0}, True),
        ({0: 5}, {0: 5}, True),
        ({0: 4}, {0: 5}, False),
        ({0: 9, 1: 2}, {0: 5, 1: 3}, False),
        ({0: 9, 1: 3}, {0: 5, 1: 3}, True),
    ],
)
def test_reached(positions: dict[int, int], targets: dict[int, int], expected: bool) -> None:
    assert Positions(dict(positions)).reached(targets) is expected


def test_pending_names_the_partitions_short_of_their_target() -> None:
    assert Positions({0: 9, 1: 2}).pending({0: 5, 1: 3, 2: 0, 3: 1}) == {1, 3}


def test_positions_never_move_back_and_ignore_unknown_offsets() -> None:
    positions = Positions()
    positions.advance(0, 7)
    positions.advance(0, 3)
    positions.advance(0, None)
    positions.advance(None, 9)
    positions.advance(1, -1001)  # OFFSET_INVALID, as an end-of-partition event may carry
    assert positions.next_offset == {0: 7}
