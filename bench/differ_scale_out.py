"""Differ benchmark (run on demand): the throughput of 1..N differ replicas in one group.

    .venv/bin/python -m bench.differ_scale_out [--events 60000] [--replicas 1 2 3]
                                               [--repeat 2] [--batch-max 500]

One differ process is bound by its own Python (``bench/differ_throughput.py`` prints that
ceiling: ~16-18 k events/s on this machine's CPU); a deployment goes faster with more replicas,
one per input partition at most. This measures that on the real worker: N ``python -m
services.differ`` processes (each its own transactional id, as StatefulSet pods have) join one
consumer group on an input of 6 partitions (so 1, 2 and 3 replicas all get equal shares).
Once every replica is ready and the group has spread the partitions, the same workload as
``differ_throughput``'s (creates and modifications of ~1.3 KB Pods) is written in one Kafka
transaction, so the read_committed replicas see all of it at once; the clock runs from that
commit to the group's committed offsets covering it. Printed per N: events/s (best of
``--repeat``) and the speed-up over one replica. The broker runs on the same CPUs, so on a
small machine the speed-up says how much CPU the broker leaves, not how the differ scales.

Figures (7 Dec 2026, 2 CPUs shared with the broker, load 0.2-1.0 at start, best of 2):

============  ======================  ======================
replicas      DELTAWATCH_BATCH_MAX    DELTAWATCH_BATCH_MAX
              500                     5000
============  ======================  ======================
1             10,779 events/s         15,936 events/s
2             17,444 (x1.62)          19,534 (x1.23)
3             17,295 (x1.60)          —
============  ======================  ======================

Two replicas use both CPUs (the broker takes the rest); a third only adds a process to share
them. The EOS passthrough anchor of ``differ_throughput`` at 500 did 67-85 k events/s on the
quiet machine that day (26.7-47 k with other work beside it), so two replicas reach 0.20-0.26
of it (0.37-0.65 of the loaded runs').
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.differ_throughput import bootstrap, workload
from deltawatch.avro_serde import AvroSerde
from deltawatch.kafka_clients import produce_when_room
from deltawatch.topics import TopicSpec, ensure_topics
from deltawatch_tools.local_pipeline import WorkerProcess, start_worker, stop_workers, wait_ready

PARTITIONS = 6


def assigned(replica: WorkerProcess) -> int:
    """``deltawatch_differ_assigned_partitions`` of one replica (0 while it cannot say)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{replica.port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        if line.startswith("deltawatch_differ_assigned_partitions "):
            return int(float(line.split()[1]))
    return 0


def wait_spread(replicas: list[WorkerProcess], timeout_s: float = 120.0) -> None:
    """Until every replica owns a share and together they own every partition."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = [assigned(r) for r in replicas]
        if sum(counts) == PARTITIONS and all(counts):
            return
        time.sleep(0.2)
    raise RuntimeError(f"partitions not spread over {len(replicas)} replicas in {timeout_s} s")


def produce_at_once(servers: str, topic: str, values: list[tuple[bytes, bytes]]) -> float:
    """Write every record in one transaction; the monotonic time its commit returned."""
    producer = Producer(
        {
            "bootstrap.servers": servers,
            "transactional.id": f"bench-scale-input-{uuid.uuid4().hex[:8]}",
            "linger.ms": 20,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in values:
        produce_when_room(producer, topic, key=key, value=value, wait_s=0.05)
    producer.commit_transaction(60)
    return time.monotonic()


def run(servers: str, values: list[tuple[bytes, bytes]], replicas: int, batch_max: int) -> float:
    tag = uuid.uuid4().hex[:8]
    topics = {
        "DELTAWATCH_RESOURCE_EVENTS_TOPIC": f"bench.scale.events.{tag}",
        "DELTAWATCH_DELTAS_TOPIC": f"bench.scale.deltas.{tag}",
        "DELTAWATCH_DIFFER_CHANGELOG_TOPIC": f"bench.scale.changelog.{tag}",
        "DELTAWATCH_DIFFER_DLQ_TOPIC": f"bench.scale.dlq.{tag}",
    }
    ensure_topics(
        AdminClient({"bootstrap.servers": servers}),
        [
            TopicSpec(name, PARTITIONS, compacted=name.startswith("bench.scale.changelog"))
            for name in topics.values()
        ],
    )
    group = f"bench-scale-{tag}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": servers,
        "DELTAWATCH_DIFFER_GROUP_ID": group,
        "DELTAWATCH_BATCH_MAX": str(batch_max),
        "DELTAWATCH_LOG_LEVEL": "WARNING",
        **topics,
    }
    workers = [
        start_worker("differ", {**env, "DELTAWATCH_TRANSACTIONAL_ID": f"{group}-{i}"})
        for i in range(replicas)
    ]
    watcher = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        wait_ready(workers)
        wait_spread(workers)
        source = topics["DELTAWATCH_RESOURCE_EVENTS_TOPIC"]
        started = produce_at_once(servers, source, values)
        tps = [TopicPartition(source, p) for p in range(PARTITIONS)]
        while sum(max(tp.offset, 0) for tp in watcher.committed(tps, timeout=10)) < len(values):
            time.sleep(0.01)
        return len(values) / (time.monotonic() - started)
    finally:
        watcher.close()
        stop_workers(workers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=2, help="runs per N; best is shown")
    parser.add_argument("--batch-max", type=int, default=500, help="DELTAWATCH_BATCH_MAX")
    args = parser.parse_args()
    servers = bootstrap()
    serde = AvroSerde.from_file("resource-event.avsc", "bench", None)
    values = [(r["instance_id"].encode(), serde.encode(r)) for r in workload(args.events)]
    print(f"{len(values)} events, {PARTITIONS} partitions, DELTAWATCH_BATCH_MAX {args.batch_max}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    one: float | None = None
    for replicas in args.replicas:
        rate = max(run(servers, values, replicas, args.batch_max) for _ in range(args.repeat))
        one = one or rate
        print(f"{replicas} replica(s): {rate:,.0f} events/s (x{rate / one:.2f} of the first row)")


if __name__ == "__main__":
    main()
