"""Keeps the differ's snapshots out of the garbage collector's full collections.

A snapshot is millions of small objects (keys, entries, per-instance dicts) that live as long
as their partition is owned and never form reference cycles, so the cyclic collector has
nothing to find in them, yet each of its full collections walks every one: ~0.6 s per
collection at 1 M resources, with nothing else running. :func:`gc.freeze` moves the objects
alive at that moment to a permanent generation that no collection walks; they are still freed
by reference counting when their partition is dropped or an entry is replaced.

Two moments freeze: the end of a restore (:func:`long_lived_state`), and, in steady state,
every :data:`WRITES_PER_FREEZE` resource writes (:class:`WriteCountFreeze`), which covers a
snapshot built from events (the first list of a large cluster) and the entries that
modifications keep replacing. Each freeze first collects, so no garbage of the time before is
frozen; only an object alive then that later becomes *cyclic* garbage would never be
collected, and the differ's loop keeps none such (``bench/differ_memory.py`` measures the
collections).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

WRITES_PER_FREEZE = 100_000
"""Resource writes between two freezes: a freeze's collection walks what is not frozen yet
(~0.1-0.2 s after 100 k writes); without freezes a full collection walks everything."""


@contextmanager
def long_lived_state() -> Iterator[None]:
    """Build a snapshot with the collector paused, then freeze what was built.

    Built under the collector, its objects were walked again and again as the older
    generations grew (most of a 55 k-record restore's time beside decoding).
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class WriteCountFreeze:
    """Freezes the heap once every ``per_freeze`` resource writes of committed batches."""

    def __init__(self, per_freeze: int = WRITES_PER_FREEZE) -> None:
        self.per_freeze = per_freeze
        self.unfrozen_writes = 0

    def written(self, count: int) -> None:
        self.unfrozen_writes += count
        if self.unfrozen_writes >= self.per_freeze:
            gc.collect()
            gc.freeze()
            self.unfrozen_writes = 0
