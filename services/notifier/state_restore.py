"""Reading a compacted state topic back into memory: the notifier's restore on assignment.

The seed's RestoreWatchers slept 10 s and hoped; here the notifier reads the partitions it
was just assigned, of the subscriptions topic and of its outbox changelog, from the
beginning to the end (``read_committed``: only what committed transactions wrote), and
acts only after that — the readiness probe says "restored" then, not before.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from deltawatch.kafka_clients import make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import CommonSettings

log = get_logger("deltawatch.notifier.restore")


def read_compacted(
    settings: CommonSettings, topic: str, partitions: list[int], timeout_s: float = 60.0
) -> dict[str, tuple[int, bytes]]:
    """Latest value per key (as ``(partition, value)``) of ``partitions``; tombstones drop keys.

    Blocking: call it from a worker thread.
    """
    if not partitions:
        return {}
    reader = make_reader(settings, client_id="deltawatch-notifier-restore")
    try:
        deadline = time.monotonic() + timeout_s
        pending: set[int] = set()
        for partition in partitions:
            low, high = _watermarks(reader, TopicPartition(topic, partition), deadline)
            if high > low:
                pending.add(partition)
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        state: dict[str, tuple[int, bytes]] = {}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"restore of {topic} {sorted(pending)} took over {timeout_s}s")
            message = reader.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition() or 0)
                    continue
                raise KafkaException(error)
            raw_key = message.key()
            if raw_key is None:
                continue
            key = raw_key.decode("utf-8", errors="replace")
            value = message.value()
            if value is None:
                state.pop(key, None)
            else:
                state[key] = (message.partition() or 0, value)
        return state
    finally:
        reader.close()


def _watermarks(reader: Consumer, partition: TopicPartition, deadline: float) -> tuple[int, int]:
    """Watermarks, retried while the partition is fresh and has no leader yet."""
    while True:
        try:
            low, high = reader.get_watermark_offsets(partition, timeout=5, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise
            log.info("watermarks not available yet", topic=partition.topic, error=str(exc))
            time.sleep(0.2)
