"""Rebuild one partition's snapshot from the changelog before that partition is processed.

The changelog partition with the same number as the input partition holds, after compaction,
one record per live resource / instance / open list, all written in the transactions that
committed the input offsets. Reading it ``read_committed`` up to its end
(:func:`deltawatch.compacted_table.read_to_end`: the end as of the start, or where librdkafka
reports partition EOF) therefore yields exactly the state that belongs with the group's
committed input offset — never a batch whose offsets were not committed. An empty partition
(low == high watermark) is not read at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer

from deltawatch.compacted_table import read_to_end
from services.differ.changelog_codec import SnapshotBuilder
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
) -> RestoreResult:
    """:func:`restore_partitions` of one partition."""
    return restore_partitions(
        reader,
        topic,
        [partition],
        legacy_cluster=legacy_cluster,
        stop_requested=stop_requested,
        timeout_s=timeout_s,
    )[0]


def restore_partitions(
    reader: Consumer,
    topic: str,
    partitions: list[int],
    *,
    legacy_cluster: str,
    stop_requested: Callable[[], bool] = lambda: False,
    timeout_s: float = 10.0,
) -> list[RestoreResult]:
    """Read changelog ``topic``'s ``partitions`` from the start to their end into snapshots.

    One read for all of them: an assignment of many partitions costs one fetch round, not one
    per partition. ``legacy_cluster`` is the cluster of records written before clusters were
    part of keys. ``timeout_s`` bounds the watermark queries; the read itself has no deadline
    (it ends at the partitions' ends, or with
    :class:`~deltawatch.compacted_table.TableReadInterrupted` once ``stop_requested()``).
    """
    started = time.monotonic()
    builders = {partition: SnapshotBuilder(legacy_cluster) for partition in partitions}
    records = read_to_end(
        reader,
        topic,
        partitions,
        watermark_timeout_s=timeout_s,
        timeout_s=None,
        stop_requested=stop_requested,
        watermark_retry=lambda _exc: False,
    )
    for message in records:
        builders[message.partition() or 0].apply(message.key(), message.value())
    seconds = time.monotonic() - started
    return [
        RestoreResult(partition, builder.snapshot, builder.records, seconds)
        for partition, builder in builders.items()
    ]
