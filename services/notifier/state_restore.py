"""Reading a compacted state topic back into memory: the notifier's restore on assignment.

The seed's RestoreWatchers slept 10 s and hoped; here the notifier reads the partitions it
was just assigned, of the subscriptions topic and of its outbox changelog, from the
beginning to the end (``read_committed``: only what committed transactions wrote), and
acts only after that — the readiness probe says "restored" then, not before.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from deltawatch.kafka_clients import make_reader
from deltawatch.settings import CommonSettings


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
        pending: set[int] = set()
        for partition in partitions:
            low, high = reader.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            if high > low:
                pending.add(partition)
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        state: dict[str, tuple[int, bytes]] = {}
        deadline = time.monotonic() + timeout_s
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
