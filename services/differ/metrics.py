"""The differ's Prometheus metrics (``deltawatch_differ_*``), defined once for the process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from deltawatch.latency import HOP_BUCKETS
from deltawatch.processing_core import transaction_counter

TRACKED_RESOURCES = Gauge(
    "deltawatch_differ_tracked_resources", "Resources in the snapshots of the owned partitions"
)
TRACKED_INSTANCES = Gauge(
    "deltawatch_differ_tracked_instances", "Instances in the snapshots of the owned partitions"
)
ASSIGNED_PARTITIONS = Gauge(
    "deltawatch_differ_assigned_partitions", "Input partitions this process owns (restored)"
)
LOCAL_STATE_PARTITIONS = Gauge(
    "deltawatch_differ_local_state_partitions",
    "Input partitions with state in DELTAWATCH_DIFFER_STATE_DIR: the owned ones and those kept "
    "for DELTAWATCH_DIFFER_STATE_CLEANUP_DELAY_S after they were revoked",
)
INPUT_EVENTS = Counter(
    "deltawatch_differ_input_events_total", "Resource events consumed, by type", ["type"]
)
RESOURCE_CHANGES = Counter(
    "deltawatch_differ_resource_changes_total",
    "Resources reported in delta events, by change type",
    ["change"],
)
EVENTS_PRODUCED = Counter(
    "deltawatch_differ_events_total", "CloudEvents produced, by kind", ["kind"]
)
BATCH_SIZE = Histogram(
    "deltawatch_differ_batch_size",
    "Input records per transaction",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
TRANSACTIONS = transaction_counter("deltawatch_differ")
DEAD_LETTERS = Counter("deltawatch_differ_dead_letters_total", "Records sent to the differ DLQ")
RESTORE_SECONDS = Histogram(
    "deltawatch_differ_restore_seconds",
    "Time to restore the snapshots of one assignment's partitions from the changelog",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
RESTORES = Counter(
    "deltawatch_differ_restores_total",
    "Partitions restored on assignment, by source: local (the differ's state directory was "
    "current) or changelog",
    ["source"],
)
RESTORED_RECORDS = Counter(
    "deltawatch_differ_restored_records_total",
    "Changelog records read during restores (from the changelog topic or the local copy)",
)
CONSUMER_LAG = Gauge(
    "deltawatch_differ_consumer_lag", "Input records not yet processed, by partition", ["partition"]
)
DELTA_LATENCY = Histogram(
    "deltawatch_differ_delta_latency_seconds",
    "The second hop: a resource event's Kafka record timestamp (stamped by the watcher's "
    "producer) to the transaction holding its delta committed.",
    buckets=HOP_BUCKETS,
)
FENCED_EVENTS = Counter(
    "deltawatch_differ_fenced_events_total",
    "Resource events dropped because a newer watcher leader epoch was already seen for their "
    "cluster on their partition (sent by a deposed leader)",
)
