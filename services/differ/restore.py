"""Rebuild one partition's snapshot from the changelog before that partition is processed.

The changelog partition with the same number as the input partition holds, after compaction,
one record per live resource / instance / open list, all written in the transactions that
committed the input offsets. Reading it ``read_committed`` up to its end (the last stable
offset, where librdkafka reports partition EOF) therefore yields exactly the state that
belongs with the group's committed input offset — never a batch whose offsets were not
committed. An empty partition (low == high watermark) is not read at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from services.differ.changelog_codec import SnapshotBuilder
from services.differ.snapshot import PartitionSnapshot


class RestoreInterrupted(Exception):
    """Shutdown was requested while a restore was running."""


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
    stop_requested: Callable[[], bool] = lambda: False,
    timeout_s: float = 10.0,
) -> RestoreResult:
    """Read changelog ``topic``/``partition`` from the start to its end into a snapshot."""
    started = time.monotonic()
    builder = SnapshotBuilder()
    low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
    if high > low:
        reader.assign([TopicPartition(topic, partition, low)])
        try:
            while True:
                if stop_requested():
                    raise RestoreInterrupted(f"restore of partition {partition} interrupted")
                messages = reader.consume(10000, 0.5)
                done = False
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            done = True
                            continue
                        raise KafkaException(error)
                    builder.apply(message.key(), message.value())
                if done:
                    break
        finally:
            reader.unassign()
    return RestoreResult(partition, builder.snapshot, builder.records, time.monotonic() - started)
