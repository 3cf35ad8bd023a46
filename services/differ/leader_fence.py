"""Drop what a deposed watcher leader still publishes: the fence by leader epoch (no I/O).

Each record of a watcher running with leader election carries its term's epoch (the Lease's
``leaseTransitions``). A leader paused past its lease (``SIGSTOP``, a long GC, a frozen VM)
cannot stop its Kafka client from sending what it had queued, so its records may land after
the new leader's. Every new term begins with list markers on *every* partition, and a
partition keeps its records in order, so on a partition any record of the new term comes after
the new epoch is known there: "lower than the highest epoch seen on this partition, for this
cluster" is exactly "sent by an older term after a newer one began". A null epoch (no leader
election) is always admitted; epochs of two clusters are unrelated (one Lease each).

Why per partition and not simply per cluster for the whole process: the decision must depend
only on the partition's own records, so that re-processing after an abort, a restart or a
rebalance decides the same (the deltas' ids are deterministic). For the same reason the
highest epoch seen is state: it is written to the partition's changelog (``["e", cluster]``)
in the batch's transaction and restored with the snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from services.differ.resource_event import ResourceEvent


class BatchFence:
    """One batch of one partition through the fence; the partition's state is untouched until
    :meth:`commit_to` (called once the batch's transaction committed)."""

    def __init__(self, highest: Mapping[str, int]) -> None:
        self._highest = highest
        self.writes: dict[str, int] = {}
        """Per cluster, the new highest epoch this batch saw (to persist)."""
        self.dropped: Counter[tuple[str, int]] = Counter()
        """Records dropped, per (cluster, epoch)."""

    def highest(self, cluster: str) -> int | None:
        return self.writes.get(cluster, self._highest.get(cluster))

    def admit(self, cluster: str, epoch: int | None) -> bool:
        if epoch is None:
            return True
        highest = self.highest(cluster)
        if highest is not None and epoch < highest:
            self.dropped[(cluster, epoch)] += 1
            return False
        if highest is None or epoch > highest:
            self.writes[cluster] = epoch
        return True

    def admitted(self, events: Iterable[ResourceEvent]) -> Iterator[ResourceEvent]:
        for event in events:
            if self.admit(event.cluster, event.leader_epoch):
                yield event

    def commit_to(self, highest: dict[str, int]) -> None:
        highest.update(self.writes)
