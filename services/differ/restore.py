"""Rebuild one partition's snapshot from the changelog before that partition is processed.

The changelog partition with the same number as the input partition holds, after compaction,
one record per live resource / instance / open list, all written in the transactions that
committed the input offsets. Reading it ``read_committed`` up to its end
(:func:`deltawatch.compacted_table.read_to_end`: the end as of the start, or where librdkafka
reports partition EOF) therefore yields exactly the state that belongs with the group's
committed input offset — never a batch whose offsets were not committed. An empty partition
(low == high watermark) is not read at all. A differ with local state
(:mod:`services.differ.local_state`) whose copy is current skips the read altogether.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer

from deltawatch.compacted_table import read_to_end
from services.differ.changelog_codec import SnapshotBuilder
from services.differ.local_state import PartitionState
from services.differ.long_lived_heap import long_lived_state
from services.differ.object_bodies import MemoryBodies, ObjectBodies
from services.differ.snapshot import PartitionSnapshot


@dataclass(frozen=True)
class RestoreResult:
    partition: int
    snapshot: PartitionSnapshot
    records: int
    seconds: float


def restore_partition(
    reader: Consumer,
    topic: str,
    partition: int,
    *,
    legacy_cluster: str,
    stop_requested: Callable[[], bool] = lambda: False,
    timeout_s: float = 10.0,
    bodies: ObjectBodies | None = None,
) -> RestoreResult:
    """:func:`restore_partitions` of one partition."""
    return restore_partitions(
        reader,
        topic,
        [partition],
        legacy_cluster=legacy_cluster,
        stop_requested=stop_requested,
        timeout_s=timeout_s,
        bodies_for=lambda _partition: MemoryBodies() if bodies is None else bodies,
    )[0]


def restore_partitions(
    reader: Consumer,
    topic: str,
    partitions: list[int],
    *,
    legacy_cluster: str,
    stop_requested: Callable[[], bool] = lambda: False,
    timeout_s: float = 10.0,
    bodies_for: Callable[[int], ObjectBodies] = lambda _partition: MemoryBodies(),
) -> list[RestoreResult]:
    """Read changelog ``topic``'s ``partitions`` from the start to their end into snapshots.

    One read for all of them: an assignment of many partitions costs one fetch round, not one
    per partition. ``legacy_cluster`` is the cluster of records written before clusters were
    part of keys. ``timeout_s`` bounds the watermark queries; the read itself has no deadline
    (it ends at the partitions' ends, or with
    :class:`~deltawatch.compacted_table.TableReadInterrupted` once ``stop_requested()``).
    The objects go to ``bodies_for(partition)``, which also gets a copy of every record.
    """
    started = time.monotonic()
    builders = {p: SnapshotBuilder(legacy_cluster, bodies_for(p)) for p in partitions}
    records = read_to_end(
        reader,
        topic,
        partitions,
        watermark_timeout_s=timeout_s,
        timeout_s=None,
        stop_requested=stop_requested,
        watermark_retry=lambda _exc: False,
    )
    with long_lived_state():
        for message in records:
            key, value = message.key(), message.value()
            builder = builders[message.partition() or 0]
            builder.apply(key, value)
            builder.snapshot.bodies.record(key or b"", value)
    seconds = time.monotonic() - started
    return [
        RestoreResult(partition, builder.snapshot, builder.records, seconds)
        for partition, builder in builders.items()
    ]


def restore_from_local(state: PartitionState, partition: int, legacy_cluster: str) -> RestoreResult:
    """The partition's snapshot from the differ's local copy of its changelog (objects stay on
    disk); only valid when the copy is current (:mod:`services.differ.local_state`)."""
    started = time.monotonic()
    builder = SnapshotBuilder(legacy_cluster, state)
    with long_lived_state():
        for key, value in state.changelog_records():
            builder.apply(key, value)
    return RestoreResult(partition, builder.snapshot, builder.records, time.monotonic() - started)
