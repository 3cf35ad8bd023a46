"""Differ benchmark (run on demand): throughput with EOS, and restore time from the changelog.

    .venv/bin/python bench/differ_throughput.py [--events 60000]
                                                [--restore-resources 50000] [--repeat 3]
                                                [--batch-max 500 5000]

1. Throughput: the same pre-produced Avro resource events (creates of events/2 Pods of ~1.3 KB
   over events/20 instances, then one modification each) are consumed, on the same broker in
   the same run, by (a) a plain passthrough written as a fast client would (``consume(n)``
   batches, produce, delivery reports served once per batch; no decoding, no transactions),
   (b) an exactly-once passthrough (read_committed consumer, transactional producer, one
   transaction per ``DELTAWATCH_BATCH_MAX`` input records with ``send_offsets_to_transaction``:
   the differ's transaction size; no decoding) and (c) the real differ loop (decode, diff,
   deltas + changelog, one transaction per batch, read_committed). Both passthroughs use the
   workers' producer and consumer settings (``deltawatch.kafka_clients``: idempotent, zstd).
   Each is timed from its first record to its last processed one (the differ: from the start
   of its first batch to its committed offsets covering the input); the best of ``--repeat``
   runs is shown, so other load on the machine distorts less. Printed: differ / EOS
   passthrough (target ≥ 0.5) and differ / plain.
2. Restore: a changelog partition holding a snapshot is restored with
   :func:`restore_partition` and, beside it, read raw (same consumer settings, no decoding).

Throughput figures (2 shared CPUs, local single-node Kafka 4.1.1 on the same CPUs, other
engineers' work running: load average 3.6-3.8; this bench's before and after runs back to back,
"before" being this file run against main 2c007b0's differ; events/s, best of 3):

===================================  ===================  ===================
                                     before (2c007b0)     after (branch perf)
===================================  ===================  ===================
plain passthrough                    69,397               170,705
DELTAWATCH_BATCH_MAX 500
  EOS passthrough                    20,352               52,659
  differ                             5,077                7,627
  differ / EOS passthrough           0.25                 0.14
DELTAWATCH_BATCH_MAX 5000
  EOS passthrough                    72,923               89,631
  differ                             8,749                13,636
  differ / EOS passthrough           0.12                 0.15
===================================  ===================  ===================

The anchors vary 2-3x from run to run on this machine (the same code: plain 69-171 k/s, EOS at
500 20-53 k/s), and so does the differ: the single pair above suggests a gain that alternating
runs do not confirm. In eight alternating runs of the differ alone (load 1.3-3.5), main did
6.8-9.5 k (500) and 11.5-15.0 k (5000), this branch 6.5-11.3 k and 12.0-15.8 k: the same within
the noise. What is measurably faster is the differ's Python per event without Kafka (decode,
parse, diff, delta and changelog records; three alternating runs of 30,000 events at 500):
58-66 µs on main, 49-53 µs here, from a direct ``produce()`` per output record, no frozen
dataclass per event or output record, no list-scope lookups while no list is open, cheaper
timestamps and delta bodies. Whole-process CPU per event in the loop is ~85-140 µs (including
librdkafka's threads), so that gain is ~10 % of it. One regression was found and fixed on the
way: the differ's busy-linger rule as first re-applied from branch ``latency`` (measured from
the previous batch's end) turned lingering off under heavy load (a 5000-record batch takes
longer than the quiet span) and halved the throughput at 5000; it now measures from the poll.

The ≥ 0.5 target is not met, and at 5000 it is not within reach of micro-optimisation: the EOS
passthrough takes ~11-20 µs of wall time per record (mostly in librdkafka and the broker), while
the differ spends ~85-140 µs of CPU per event (process CPU time over the run), ~50 of them
spread thin in Python (cProfile, BATCH_MAX 500, each item ~5-10 %: Avro decode
(fastavro), ``parse_resource_event`` with orjson, the canonical digest, the delta body and
headers, the changelog records, three produces per event at 500 on this workload (delta,
resource record, sequence record: every batch touches each instance once), the
per-record latency histogram). Throughput scales out with replicas (one per partition at
most).

Memory is measured by ``bench/differ_memory.py`` (resident, realistic Pods, objects in memory
or in local state).

Restore (``--restore-only``; best of 3; the raw read is the same reader and fetch loop
reading the same partition without decoding; ratio = raw read time / restore time, target
≥ 0.5). Columns: librdkafka's default ``fetch.queue.backoff.ms`` (1000: a restore filled the
reader's queue faster than it decoded and the fetcher then paused for whole seconds); 10 ms
(``deltawatch.kafka_clients.READER_QUEUE_BACKOFF_MS``); and, 7 Dec 2026 evening, the snapshot
built with the garbage collector paused and then frozen
(``services.differ.restore.long_lived_state``), each restored object left inside its record's
value. The last two columns were measured alternately, two to four times each (the 1.3 KB
ones once), on the same broker (load ~1-2; the bench now drops the snapshot it seeded the
changelog with before restoring):

====================================  ==================  ==================  ==================
                                      backoff 1000        backoff 10          GC paused, frozen
====================================  ==================  ==================  ==================
55,000 records, realistic 5.9 KB Pods
  raw read                            0.17 s              0.17-0.35 s         0.19-0.25 s
  into memory                         1.74 s (0.10)       0.86-0.96 s (0.19)  0.36-0.46 s (0.53)
  into local state                    2.47 s (0.07)       1.12-1.49 s (0.15)  1.00-1.30 s (0.18)
  restart, local state current        0.51 s              0.50-0.63 s         0.23-0.31 s
66,000 records, 1.3 KB Pods
  raw read                            0.17 s              0.14 s              0.10 s
  into memory                         0.91 s (0.19)       0.74 s (0.19)       0.31 s (0.31)
  into local state                    1.00 s (0.17)       0.85 s (0.17)       0.56 s (0.17)
  restart, local state current        —                   0.44 s              0.24 s
====================================  ==================  ==================  ==================

Into memory the target is met for realistic Pods (0.50-0.63 in four runs) and not for small
ones (0.31: their raw read is faster, the per-record Python the same, ~4.5 µs); into local
state (the RocksDB writes) it is not met. The collector was most of what was left: a snapshot is
millions of small acyclic objects, and while it grew the older generations walked them again
and again. The raw read anchor used to be ``consume(10000, 0.5)``, which waits out its timeout
for the last, partial batch (up to 0.5 s more, so earlier ratios of 0.5-1.0 flattered the
restore); it now fetches as the restore does. A restart whose local state is current reads no
changelog: 0.23-0.31 s for these 50,000 Pods, 4.5-4.7 s for 1 M (``bench/differ_memory.py``).

Throughput, 7 Dec 2026 evening (best of 2, load 4-5, back to back): before and after the
transactional producers' ``retry.backoff.ms`` of 10 (``bench/transaction_commit.py``), the
EOS passthrough at 500 went from 49,276 to 97,556 events/s (its transactions run back to back,
and every other one waited 100 ms for a retry), at 5000 from 159,924 to 179,468; the differ
stayed at 11,281 → 11,455 (500) and 14,741 → 16,015 (5000): its Python between transactions
leaves the coordinator time to finish. So differ / EOS passthrough is now 0.12 (500) and 0.09
(5000): further from the target, because the anchor got faster.

The ceiling (7 Dec 2026, night; two runs, load 0.4 at start, best of 2 and of 3): the bench now
also times the differ's own Python per event with Kafka left out (:func:`python_cost`: decode,
check, diff, delta and changelog records, snapshot advanced) and Avro decoding alone:

=========================================  ====================  ====================
                                           500                   5000
=========================================  ====================  ====================
EOS passthrough (events/s)                 26,727 / 47,027       111,802 / 127,169
target: half of it                         13,364 / 23,514       55,901 / 63,585
  = µs per event for everything            74.8 / 42.5           17.9 / 15.7
differ (events/s)                          10,094 / 10,702       14,570 / 12,524
differ's Python without Kafka (µs/event)   54.0 / 62.9           59.2 / 57.8
  of which Avro decoding                   11.5 / 11.6           11.2 / 12.2
  = the most it can do (events/s)          18,524 / 15,897       16,896 / 17,310
=========================================  ====================  ====================

So at 5000 the target leaves 16-18 µs per event and the Python alone takes 58-59 (decoding a
record with fastavro, the fastest Avro reader for Python, is 11-12 of them): no Kafka tuning
can close that. At 500 it depends on the anchor, which is bound by commit round trips and so
by whatever else runs: the 26.7 k run had another engineer's ``mypy`` beside it, and there the
target (13.4 k) lay inside the ceiling (18.5 k) and the differ reached 0.38 of the anchor. On
the quiet machine afterwards the EOS passthrough alone did 67-85 k in four runs (with 1-8
``CONCURRENT_TRANSACTIONS`` retries per 120 transactions, ``debug=eos``): a target of 34-43 k,
twice the ceiling. The difference between the differ and its
ceiling at 500 is mostly its ~12 ms commit per batch, which the processing core deliberately
does not overlap with the next batch (no transaction is ever open across a ``consume()``:
that is what makes rebalances safe). Compiling the pure modules with mypyc (tried in a
scratch copy: resource_diff, snapshot, resource_event, delta_events, changelog_codec,
object_bodies, resource_identity) took the Python from ~61 to ~55 µs: 10 %, not the 3-4x needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.differ_memory import event as realistic_event
from bench.pod_shape import pod_event
from deltawatch.avro_serde import AvroSerde
from deltawatch.health import HealthState
from deltawatch.kafka_clients import (
    consume_available,
    make_consumer,
    make_producer,
    make_reader,
    produce_when_room,
)
from deltawatch.logs import configure_logging
from deltawatch.settings import DifferSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import TopicSpec, ensure_topics
from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from services.differ.changelog_codec import encode_outcome, encode_snapshot
from services.differ.delta_events import delta_record
from services.differ.local_state import LocalStateDb
from services.differ.resource_diff import apply_batch
from services.differ.resource_event import parse_resource_event
from services.differ.restore import restore_from_local, restore_partition
from services.differ.snapshot import PartitionSnapshot
from services.differ.transaction_loop import DifferLoop, DifferTopics

PARTITIONS = 3


def bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    broker = LocalKafkaBroker()
    state = broker.status() or broker.start()
    return state.bootstrap


def pod(instance: str, name: str, phase: str) -> dict[str, Any]:
    """A Pod of realistic shape and size (~1.3 KB of JSON)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "bench",
            "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{instance}/{name}")),
            "resourceVersion": str(time.monotonic_ns()),
            "labels": {"k8splugin.io/rb-instance-id": instance, "app": name.rsplit("-", 1)[0]},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs"}],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/team/app:1.2.3",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(5)],
                }
            ],
        },
        "status": {
            "phase": phase,
            "podIP": "10.0.0.1",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 0, "image": "app:1.2.3"}
            ],
        },
    }


def record(event_type: str, instance: str, name: str, phase: str) -> dict[str, Any]:
    body = pod(instance, name, phase)
    return pod_event(event_type, instance, body, json.dumps(body), datetime.now(UTC))


def workload(events: int) -> list[dict[str, Any]]:
    """Creates of events/2 pods over events/20 instances, then one modification each."""
    pods = events // 2
    instances = max(1, events // 20)
    out = [record("ADDED", f"inst-{i % instances}", f"web-{i}", "Pending") for i in range(pods)]
    out += [record("MODIFIED", f"inst-{i % instances}", f"web-{i}", "Running") for i in range(pods)]
    return out


def produce_input(servers: str, topic: str, records: list[dict[str, Any]]) -> None:
    serde = AvroSerde.from_file("resource-event.avsc", topic, None)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20, "enable.idempotence": True})
    for rec in records:
        key, value = rec["instance_id"].encode(), serde.encode(rec)
        produce_when_room(producer, topic, key=key, value=value, wait_s=0.1)
    assert producer.flush(60) == 0


PASS_CONSUME = 10_000
"""Records per ``consume()`` of the plain passthrough: as a fast client batches."""


def _produce(producer: Producer, topic: str, message: Any) -> None:
    # The anchors' timed path: a direct produce(), produce_when_room (a keyword dict and one
    # more call per record) only when the queue is full, as the processing core does.
    try:
        producer.produce(
            topic, key=message.key(), value=message.value(), partition=message.partition()
        )
    except BufferError:
        key, value, partition = message.key(), message.value(), message.partition()
        produce_when_room(producer, topic, key=key, value=value, wait_s=0.05, partition=partition)


def passthrough(servers: str, source: str, target: str, total: int) -> float:
    """Consume → produce as a fast client: ``consume(n)`` in batches, delivery reports served
    once per batch, no transactions, no decoding; the same producer and consumer settings as the
    differ's (idempotent, zstd) except the isolation level."""
    settings = DifferSettings(KAFKA_BOOTSTRAP_SERVERS=servers)
    consumer = make_consumer(settings, f"bench-pass-{uuid.uuid4().hex}", read_committed=False)
    producer = make_producer(settings, client_id="bench-pass")
    consumer.subscribe([source])
    seen = 0
    started = 0.0
    while seen < total:
        wanted = min(PASS_CONSUME, total - seen)  # the last consume need not sit out its timeout
        messages = [m for m in consumer.consume(wanted, 0.5) if not m.error()]
        if messages and not started:
            started = time.perf_counter()
        for message in messages:
            _produce(producer, target, message)
        producer.poll(0)
        seen += len(messages)
    assert producer.flush(60) == 0
    elapsed = time.perf_counter() - started
    consumer.close()
    return total / elapsed


def eos_passthrough(servers: str, source: str, target: str, total: int, batch: int) -> float:
    """Consume → produce exactly once, as the differ commits: a read_committed consumer, a
    transactional producer, one transaction per ``batch`` input records (the differ's
    ``DELTAWATCH_BATCH_MAX``) carrying the records and ``send_offsets_to_transaction``; no
    decoding. Timed from the first record to the last commit."""
    settings = DifferSettings(KAFKA_BOOTSTRAP_SERVERS=servers)
    group = f"bench-eos-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(settings, group)
    producer = make_producer(settings, transactional_id=group, client_id="bench-eos")
    producer.init_transactions(30)
    consumer.subscribe([source])
    seen = 0
    started = 0.0
    while seen < total:
        messages = [m for m in consumer.consume(min(batch, total - seen), 0.5) if not m.error()]
        if not messages:
            continue
        if not started:
            started = time.perf_counter()
        producer.begin_transaction()
        offsets: dict[int, int] = {}
        for message in messages:
            _produce(producer, target, message)
            offsets[message.partition() or 0] = (message.offset() or 0) + 1  # set on records
        positions = [TopicPartition(source, p, o) for p, o in offsets.items()]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        seen += len(messages)
    elapsed = time.perf_counter() - started
    consumer.close()
    return total / elapsed


def python_cost(records: list[dict[str, Any]], batch: int) -> tuple[float, float]:
    """µs per event of the differ's own Python with Kafka left out, and of Avro decoding alone.

    The first is the work the loop does between ``consume`` and ``produce``: decode and check
    each event, diff the batch, build its delta and changelog records, advance the snapshot.
    It bounds the differ whatever Kafka costs: no faster than one event per that many µs on
    this CPU (the loop runs it in one thread; the GIL keeps it there)."""
    serde = AvroSerde.from_file("resource-event.avsc", "bench", None)
    serde.accept_earlier_writer(("leader_epoch", "leader_lease"))  # as the loop reads
    values = [serde.encode(r) for r in records]
    snapshot = PartitionSnapshot()
    started = time.perf_counter()
    for first in range(0, len(values), batch):
        events = (parse_resource_event(serde.decode(v)) for v in values[first : first + batch])
        outcome = apply_batch(snapshot, events)
        encode_outcome(outcome)
        for delta in outcome.deltas:
            delta_record(delta)
        outcome.commit_to(snapshot)
    work = time.perf_counter() - started
    started = time.perf_counter()
    for value in values:
        serde.decode(value)
    decode = time.perf_counter() - started
    return work / len(values) * 1e6, decode / len(values) * 1e6


class _FirstRecordClock(DifferLoop):
    """The real loop, noting when it starts on its first batch (the passthrough's clock too)."""

    first_batch_at = 0.0

    def _process(self, messages: list[Any]) -> None:
        if not self.first_batch_at:
            self.first_batch_at = time.perf_counter()
        super()._process(messages)


def differ_rate(servers: str, topics: DifferTopics, total: int, batch_max: int | None) -> float:
    batch_setting: dict[str, Any] = {} if batch_max is None else {"DELTAWATCH_BATCH_MAX": batch_max}
    settings = DifferSettings(
        KAFKA_BOOTSTRAP_SERVERS=servers,
        DELTAWATCH_RESOURCE_EVENTS_TOPIC=topics.resource_events,
        DELTAWATCH_DELTAS_TOPIC=topics.deltas,
        DELTAWATCH_DIFFER_GROUP_ID=f"bench-differ-{uuid.uuid4().hex[:8]}",
        DELTAWATCH_TRANSACTIONAL_ID=f"bench-differ-{uuid.uuid4().hex[:8]}",
        DELTAWATCH_LOG_LEVEL="WARNING",
        **batch_setting,
    )
    health = HealthState(["assigned", "restored"])
    shutdown = ShutdownFlag()
    loop = _FirstRecordClock(settings, topics, health, shutdown)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    watcher = Consumer({"bootstrap.servers": servers, "group.id": settings.group_id})
    tps = [TopicPartition(topics.resource_events, p) for p in range(PARTITIONS)]
    while True:
        committed = sum(max(tp.offset, 0) for tp in watcher.committed(tps, timeout=10))
        if committed >= total:
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - loop.first_batch_at
    shutdown.request()
    thread.join(20)
    watcher.close()
    return total / elapsed


def restore_times(
    servers: str, resources: int, repeat: int, scratch: str, realistic: bool
) -> dict[str, float]:
    topic = f"bench.changelog.{uuid.uuid4().hex[:8]}"
    ensure_topics(AdminClient({"bootstrap.servers": servers}), [TopicSpec(topic, 1, True)])
    snapshot = PartitionSnapshot()
    instances = max(1, resources // 10)
    now = datetime.now(UTC)
    for first in range(0, resources, 1000):  # in batches: parsed Pods are large
        events = [
            realistic_event(i, instances, now)
            if realistic
            else parse_resource_event(record("ADDED", f"inst-{i % instances}", f"p-{i}", "R"))
            for i in range(first, min(first + 1000, resources))
        ]
        apply_batch(snapshot, events).commit_to(snapshot)
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20})
    seeded = encode_snapshot(snapshot)
    del snapshot  # restores start as a differ does: without the objects they bring back
    for key, value in seeded:
        produce_when_room(producer, topic, key=key, value=value, wait_s=0.1, partition=0)
    producer.flush(120)
    records = len(seeded)
    del seeded
    gc.collect()
    settings = DifferSettings(KAFKA_BOOTSTRAP_SERVERS=servers)
    best: dict[str, float] = {}
    for _round in range(repeat):  # best of: other load on the machine distorts less
        for name, seconds in (
            ("raw_read_s", raw_read(settings, topic)),
            ("restore_s", restore_seconds(settings, topic, resources, None)),
            ("restore_disk_s", restore_seconds(settings, topic, resources, Path(scratch))),
        ):
            best[name] = min(best.get(name, seconds), seconds)
    return {"records": float(records), **best}


def restore_seconds(
    settings: DifferSettings, topic: str, resources: int, state_dir: Path | None
) -> float:
    """One restore of the changelog partition, into memory or (as a differ with
    DELTAWATCH_DIFFER_STATE_DIR whose local state is not current does) into local state.
    With local state, the restart after it (the state now current) is timed too and kept in
    ``LOCAL_RESTORES``."""
    reader = make_reader(settings)
    database = LocalStateDb(state_dir / uuid.uuid4().hex) if state_dir else None
    started = time.perf_counter()
    result = restore_partition(
        reader,
        topic,
        0,
        legacy_cluster="bench",
        bodies=database.fresh_partition(0) if database else None,
    )
    result.snapshot.bodies.flush(resources)
    seconds = time.perf_counter() - started
    reader.close()
    assert result.snapshot.resource_count() == resources
    if database is not None:
        started = time.perf_counter()
        local = restore_from_local(database.partition(0), 0, "bench")
        LOCAL_RESTORES.append(time.perf_counter() - started)
        assert local.snapshot.resource_count() == resources
    return seconds


LOCAL_RESTORES: list[float] = []


def raw_read(settings: DifferSettings, topic: str) -> float:
    """The same reader and fetch loop as a restore's (``consume_available``), nothing decoded.

    (Not ``consume(10000, 0.5)``: that waits out its timeout for the last, partial batch,
    which added up to 0.5 s to the anchor.)"""
    raw = make_reader(settings)
    raw.assign([TopicPartition(topic, 0, 0)])
    started = time.perf_counter()
    while True:
        messages = consume_available(raw, 10000, 0.5)
        errors = [m.error() for m in messages]
        if any(e is not None and e.code() == KafkaError._PARTITION_EOF for e in errors):
            break
    seconds = time.perf_counter() - started
    raw.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--restore-resources", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs; best is shown")
    parser.add_argument(
        "--batch-max", type=int, nargs="*", help="DELTAWATCH_BATCH_MAX values to try"
    )
    parser.add_argument("--restore-only", action="store_true", help="skip the throughput runs")
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="restore realistic ~5.9 KB Pods (bench/pod_shape.py), not the 1.3 KB one",
    )
    args = parser.parse_args()
    configure_logging("differ", "WARNING", "console")
    servers = bootstrap()
    if not args.restore_only:
        throughput(servers, args)
    with tempfile.TemporaryDirectory(prefix="differ-restore-") as scratch:
        restore = restore_times(
            servers, args.restore_resources, args.repeat, scratch, args.realistic
        )
    raw_s = restore["raw_read_s"]
    print(
        f"restore of {restore['records']:,.0f} changelog records (best of {args.repeat}): "
        f"raw read {raw_s:.2f} s; into memory {restore['restore_s']:.2f} s "
        f"(ratio {raw_s / restore['restore_s']:.2f}, target >= 0.5); into local state "
        f"{restore['restore_disk_s']:.2f} s (ratio {raw_s / restore['restore_disk_s']:.2f}); "
        f"a restart with that local state current: {min(LOCAL_RESTORES):.2f} s"
    )


def throughput(servers: str, args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:8]
    topics = DifferTopics(
        resource_events=f"bench.events.{tag}",
        deltas=f"bench.deltas.{tag}",
        changelog=f"bench.changelog.{tag}",
        dlq=f"bench.dlq.{tag}",
    )
    admin = AdminClient({"bootstrap.servers": servers})
    ensure_topics(
        admin,
        [
            TopicSpec(topics.resource_events, PARTITIONS),
            TopicSpec(topics.deltas, PARTITIONS),
            TopicSpec(topics.changelog, PARTITIONS, compacted=True),
            TopicSpec(topics.dlq, PARTITIONS),
            TopicSpec(f"bench.pass.{tag}", PARTITIONS),
        ],
    )
    records = workload(args.events)
    produce_input(servers, topics.resource_events, records)
    print(f"input: {len(records)} Avro resource events, {PARTITIONS} partitions")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # Best of --repeat runs each: the figures are meant to show the code, not the neighbours.
    target = f"bench.pass.{tag}"
    bare = max(
        passthrough(servers, topics.resource_events, target, len(records))
        for _ in range(args.repeat)
    )
    print(f"plain passthrough (batch consume→produce, no EOS): {bare:,.0f} events/s")
    for batch_max in args.batch_max or [None]:
        batch = batch_max or DifferSettings().batch_max
        eos = max(
            eos_passthrough(servers, topics.resource_events, target, len(records), batch)
            for _ in range(args.repeat)
        )
        differ = max(
            differ_rate(servers, topics, len(records), batch_max) for _ in range(args.repeat)
        )
        print(
            f"DELTAWATCH_BATCH_MAX {batch}: EOS passthrough (a transaction per {batch} records) "
            f"{eos:,.0f} events/s; differ (decode, diff, deltas+changelog, EOS) "
            f"{differ:,.0f} events/s; differ/EOS passthrough {differ / eos:.2f} (target >= 0.5), "
            f"differ/plain {differ / bare:.2f}"
        )
        work_us, decode_us = min(python_cost(records, batch) for _ in range(args.repeat))
        print(
            f"  the target, {eos / 2:,.0f} events/s, leaves {2e6 / eos:.1f} µs per event for "
            f"everything; the differ's Python without Kafka takes {work_us:.1f} µs "
            f"(Avro decoding alone {decode_us:.1f} µs): at most {1e6 / work_us:,.0f} events/s "
            "if Kafka cost nothing"
        )


if __name__ == "__main__":
    main()
