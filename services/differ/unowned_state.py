"""Which partitions' local state this differ keeps without owning them, and when to drop it.

A revoked partition often comes back (a rolling restart, a scale-down and up, a replica that
rejoins): its local state then spares a restore from the changelog, so it is not dropped at
once. Kept for ever, though, every replica's disk would in time hold each partition it ever
owned, the objects of the whole changelog. Kafka Streams settles it the same way with
``state.cleanup.delay.ms`` (10 minutes): state unowned for that long is deleted. The state of
partitions found on disk at start and not assigned counts as unowned from the start.

No I/O: :class:`services.differ.owned_partitions.OwnedPartitions` asks which are due and drops
them from :class:`services.differ.local_state.LocalStateDb`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class UnownedState:
    delay_s: float
    """``DELTAWATCH_DIFFER_STATE_CLEANUP_DELAY_S`` (default 600: Kafka Streams' 10 minutes)."""
    _since: dict[int, float] = field(default_factory=dict)

    def unowned(self, partitions: Iterable[int], now: float) -> None:
        """No longer owned (or found on disk unowned) at ``now``; an earlier time stands."""
        for partition in partitions:
            self._since.setdefault(partition, now)

    def owned(self, partitions: Iterable[int]) -> None:
        """Assigned again: their state is in use, whatever its age."""
        for partition in partitions:
            self._since.pop(partition, None)

    def due(self, now: float) -> list[int]:
        """The partitions unowned for ``delay_s`` or longer, in order; forgotten here once told."""
        due = sorted(p for p, since in self._since.items() if now - since >= self.delay_s)
        for partition in due:
            del self._since[partition]
        return due

    def partitions(self) -> set[int]:
        """Those whose state is kept, unowned."""
        return set(self._since)
