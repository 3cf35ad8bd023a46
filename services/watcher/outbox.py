"""The bounded buffer between the watch threads and the Kafka producer.

Backpressure is the point: when Kafka is slow or down, the producer stops taking records, this
buffer fills, and the watch threads block in :meth:`Outbox.put` — so they stop reading their
HTTP streams and the API server holds the events (the TCP window and, after a while, a
410 → relist) instead of the watcher's memory. The bound is in bytes as well as items because
one record can be a few kilobytes or several megabytes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Outgoing:
    """One record to publish. ``key`` None + ``all_partitions``: a list marker."""

    value: bytes
    key: bytes | None
    kind: str
    event_type: str
    all_partitions: bool = False
    on_delivered: Callable[[], None] | None = None
    observed_at: float | None = None
    """Epoch seconds the watch saw the change (watched objects only): the first hop's start."""
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.value) + len(self.key or b"")


class Outbox:
    def __init__(self, max_bytes: int, max_items: int = 10_000) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: deque[Outgoing] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False

    def _full_for(self, item: Outgoing) -> bool:
        if not self._items:  # an item larger than the bound still goes, alone
            return False
        return len(self._items) >= self.max_items or self._bytes + item.size > self.max_bytes

    def put(self, item: Outgoing, stop: threading.Event) -> bool:
        """Block while the outbox is full; False (item not taken) once ``stop`` is set or the
        outbox is closed."""
        with self._cond:
            while self._full_for(item):
                if stop.is_set() or self._closed:
                    return False
                self._cond.wait(0.25)
            if stop.is_set() or self._closed:
                return False
            self._items.append(item)
            self._bytes += item.size
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float) -> Outgoing | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            item = self._items.popleft()
            self._bytes -= item.size
            self._cond.notify_all()
            return item

    def clear(self) -> int:
        """Drop everything queued (leadership lost: the next leader's relist tells the truth)."""
        with self._cond:
            dropped = len(self._items)
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
            return dropped

    def close(self) -> None:
        """Refuse further items and wake every blocked producer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes
