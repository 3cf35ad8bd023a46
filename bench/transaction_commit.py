"""Transactions back to back (run on demand): how long a commit takes when the next
transaction begins right after it, as the differ's and notifier's loops do under load.

    .venv/bin/python -m bench.transaction_commit [--transactions 200] [--gap-ms 0]

Each transaction, with the workers' transactional producer (``make_producer``), produces one
record and the consumer offsets (``send_offsets_to_transaction``), then commits; the time from
``begin_transaction`` to the end of ``commit_transaction`` is recorded, for librdkafka's
default ``retry.backoff.ms`` (100) and for the workers' (``TRANSACTION_RETRY_BACKOFF_MS``).

Figures (2 shared CPUs, local KRaft 4.1.1, 190 transactions each, ms):

=========================  ==================  ====================
                           retry.backoff 100   retry.backoff 10
=========================  ==================  ====================
back to back: p50 / p90    96.8 / 120.0        11.8 / 14.7
back to back: max          124.3               24.3
transactions over 50 ms    137 of 190          0 of 190
1 ms apart: p50 / p90      3.1 / 3.3           3.1 / 3.4
=========================  ==================  ====================

A transaction begun while the coordinator still writes the previous one's markers is
refused (CONCURRENT_TRANSACTIONS) and retried after ``retry.backoff.ms``. In the running
pipeline (one ``e2e_latency`` run: 30 s at 100 changes/s, then its "max" step), an
instrumented notifier logged about 27 commits of 73-125 ms before. After the change, the same
probe under an extra busy process (load 7) still logged 41 commits over 50 ms, up to 179 ms:
with both CPUs saturated, commits are slow for other reasons too.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import TopicPartition

from deltawatch.kafka_clients import (
    TRANSACTION_RETRY_BACKOFF_MS,
    make_admin,
    make_consumer,
    make_producer,
)
from deltawatch.settings import CommonSettings
from deltawatch.topics import TopicSpec, ensure_topics
from deltawatch_tools.localkafka.broker import LocalKafkaBroker


def commit_times(
    settings: CommonSettings, backoff_ms: int, count: int, gap_s: float
) -> list[float]:
    topic = f"bench.txn.{uuid.uuid4().hex[:8]}"
    ensure_topics(make_admin(settings), [TopicSpec(topic, 1)])
    backoff: dict[str, Any] = {"retry.backoff.ms": backoff_ms}
    producer = make_producer(settings, transactional_id=topic, **backoff)
    consumer = make_consumer(settings, topic)
    producer.init_transactions(30)
    times: list[float] = []
    for n in range(count):
        started = time.perf_counter()
        producer.begin_transaction()
        producer.produce(topic, b"x" * 200, key=b"k")
        offsets = [TopicPartition(topic, 0, n)]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        times.append((time.perf_counter() - started) * 1000)
        if gap_s:
            time.sleep(gap_s)
    consumer.close()
    return sorted(times[10:])  # without the first ones (connections, coordinator lookup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    args = parser.parse_args()
    state = LocalKafkaBroker().start()
    settings = CommonSettings(KAFKA_BOOTSTRAP_SERVERS=state.bootstrap)
    for backoff_ms in (100, TRANSACTION_RETRY_BACKOFF_MS):
        times = commit_times(settings, backoff_ms, args.transactions, args.gap_ms / 1000)
        p50, p90 = times[len(times) // 2], times[int(len(times) * 0.9)]
        slow = sum(t > 50 for t in times)
        print(
            f"retry.backoff.ms {backoff_ms:>3}: p50 {p50:.1f} p90 {p90:.1f} max {times[-1]:.1f} ms;"
            f" {slow} of {len(times)} over 50 ms"
        )


if __name__ == "__main__":
    main()
