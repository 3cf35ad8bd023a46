"""Drop what a deposed watcher leader still publishes: the fence by leader epoch (no I/O).

Each record of a watcher running with leader election carries its term's epoch (the Lease's
``leaseTransitions``). A leader paused past its lease (``SIGSTOP``, a long GC, a frozen VM)
cannot stop its Kafka client from sending what it had queued, so its records may land after
the new leader's. Every new term begins with list markers on *every* partition, and a
partition keeps its records in order, so on a partition any record of the new term comes after
the new epoch is known there: "lower than the highest epoch seen on this partition, for this
cluster and Lease" is exactly "sent by an older term after a newer one began". A null epoch (no
leader election) is always admitted. Epochs count the terms of one Lease: those of two clusters,
or of two pairs splitting one cluster by namespace or kind (one Lease each), are unrelated, so
the record's ``leader_lease`` is part of the key.

Why per partition and not simply per cluster for the whole process: the decision must depend
only on the partition's own records, so that re-processing after an abort, a restart or a
rebalance decides the same (the deltas' ids are deterministic). For the same reason the
highest epoch seen is state: it is written to the partition's changelog
(``["e", cluster, lease]``) in the batch's transaction and restored with the snapshot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from services.differ.resource_event import ResourceEvent

Fenced = tuple[str, str]
"""(cluster, Lease ``namespace/name``): whose epochs are compared."""


class BatchFence:
    """One batch of one partition through the fence; the partition's state is untouched until
    :meth:`commit_to` (called once the batch's transaction committed)."""

    def __init__(self, highest: Mapping[Fenced, int]) -> None:
        self._highest = highest
        self.writes: dict[Fenced, int] = {}
        """Per (cluster, Lease), the new highest epoch this batch saw (to persist)."""
        self.dropped: Counter[tuple[Fenced, int]] = Counter()
        """Records dropped, per ((cluster, Lease), epoch)."""

    def highest(self, fenced: Fenced) -> int | None:
        return self.writes.get(fenced, self._highest.get(fenced))

    def admit(self, fenced: Fenced, epoch: int | None) -> bool:
        if epoch is None:
            return True
        highest = self.highest(fenced)
        if highest is not None and epoch < highest:
            self.dropped[(fenced, epoch)] += 1
            return False
        if highest is None or epoch > highest:
            self.writes[fenced] = epoch
        return True

    def admitted(self, events: Iterable[ResourceEvent]) -> Iterator[ResourceEvent]:
        for event in events:
            if self.admit((event.cluster, event.leader_lease), event.leader_epoch):
                yield event

    def commit_to(self, highest: dict[Fenced, int]) -> None:
        highest.update(self.writes)
