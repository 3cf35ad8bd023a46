"""The differ's snapshots are kept out of the garbage collector's full collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.differ.long_lived_heap import WriteCountFreeze, long_lived_state


@pytest.fixture(autouse=True)
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # what these tests froze goes back to the collector of the test process


def test_a_restored_snapshot_is_frozen_and_the_collector_runs_again() -> None:
    gc.unfreeze()
    with long_lived_state():
        assert not gc.isenabled()  # paused while the snapshot is built
        snapshot = {f"key-{n}": [n] for n in range(1000)}
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(snapshot)


def test_the_collector_runs_again_when_a_restore_fails() -> None:
    with pytest.raises(RuntimeError), long_lived_state():
        raise RuntimeError("changelog unreadable")
    assert gc.isenabled()


def test_the_heap_is_frozen_once_enough_resources_were_written() -> None:
    gc.unfreeze()
    freeze = WriteCountFreeze(per_freeze=10)
    freeze.written(6)
    freeze.written(3)
    assert gc.get_freeze_count() == 0
    kept = [[n] for n in range(100)]
    freeze.written(1)
    assert gc.get_freeze_count() >= len(kept)
    assert freeze.unfrozen_writes == 0  # counting starts again
