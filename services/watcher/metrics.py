"""The watcher's Prometheus metrics, all named ``deltawatch_watcher_*``.

They answer the questions an operator has about a watcher: is it publishing (events by kind
and type), is it healthy against the API server (relists by reason, watch restarts by cause,
seconds since each kind last produced an event), is Kafka keeping up (queue depth and bytes,
publish errors), and does it lead its cluster's active/standby pair. Kinds are labelled
``group/version/Kind`` (``v1/Kind`` for the core group).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from deltawatch.latency import HOP_BUCKETS


class _SinceLastEvent(Collector):
    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, kind: str) -> None:
        with self._lock:
            self._last[kind] = time.monotonic()

    def forget(self, kind: str) -> None:
        with self._lock:
            self._last.pop(kind, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "deltawatch_watcher_seconds_since_last_event",
            "Seconds since the last object (listed or watched) of the kind arrived.",
            labels=["kind"],
        )
        now = time.monotonic()
        with self._lock:
            for kind, at in sorted(self._last.items()):
                family.add_metric([kind], now - at)
        yield family


class WatcherMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        # Tests give each watcher a registry of its own, so every series is bound to it here.
        counter = functools.partial(Counter, registry=registry)
        gauge = functools.partial(Gauge, registry=registry)
        self.events_published = counter(
            "deltawatch_watcher_events_published",
            "Records confirmed written to the resource-events topic (markers once per list).",
            ["kind", "type"],
        )
        self.relists = counter(
            "deltawatch_watcher_relists",
            "LISTs started, by reason: initial, expired (410 Gone), error.",
            ["kind", "reason"],
        )
        self.watch_restarts = counter(
            "deltawatch_watcher_watch_restarts",
            "WATCH streams that ended, by cause: timeout (server closed it), error, expired.",
            ["kind", "cause"],
        )
        self.publish_errors = counter(
            "deltawatch_watcher_publish_errors",
            "Kafka produce or delivery errors, by librdkafka error name.",
            ["reason"],
        )
        self.queue_items = gauge(
            "deltawatch_watcher_queue_depth",
            "Records waiting between the watch threads and the Kafka producer.",
        )
        self.queue_bytes = gauge(
            "deltawatch_watcher_queue_bytes",
            "Bytes waiting between the watch threads and the Kafka producer.",
        )
        self.watches = gauge(
            "deltawatch_watcher_watches",
            "Watch targets running (kind x namespace).",
        )
        self.kind_forbidden = gauge(
            "deltawatch_watcher_kind_forbidden",
            "1 while the watcher's credentials are refused (401/403) listing or watching the kind.",
            ["kind"],
        )
        self.kind_served = gauge(
            "deltawatch_watcher_kind_served",
            "1 when discovery found the kind, 0 while the server does not serve it.",
            ["kind"],
        )
        self.publish_latency = Histogram(
            "deltawatch_watcher_publish_latency_seconds",
            "The first hop: a watch event received (its observed_at) to its record acknowledged "
            "by Kafka (watched changes only, not a list's objects).",
            buckets=HOP_BUCKETS,
            registry=registry,
        )
        self.since_last_event = _SinceLastEvent()
        registry.register(self.since_last_event)
        self._bind_pair_metrics(registry)

    def _bind_pair_metrics(self, registry: CollectorRegistry) -> None:
        """The active/standby pair's view: which role this process has, and how often it moved."""
        self.leader = Gauge(
            "deltawatch_watcher_leader",
            "1 while this watcher leads (runs the watches), 0 while it stands by.",
            registry=registry,
        )
        self.leader_transitions = Counter(
            "deltawatch_watcher_leader_transitions",
            "Times this watcher started leading (to=leader) or stopped (to=standby).",
            ["to"],
            registry=registry,
        )
