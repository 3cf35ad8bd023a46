"""The notifier's Prometheus metrics (names prefixed ``deltawatch_notifier_``).

One module so that an operator finds every series the notifier exports in one place, and
so that the loop and the delivery code share the same objects.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from deltawatch.latency import HOP_BUCKETS
from deltawatch.processing_core import transaction_counter

COMMANDS = Counter(
    "deltawatch_notifier_commands_total",
    "Subscription commands answered, by action and result (accepted or the rejection code).",
    ["action", "result"],
)
SUBSCRIPTIONS = Gauge(
    "deltawatch_notifier_subscriptions", "Callback subscriptions this notifier owns."
)
DELTAS = Counter(
    "deltawatch_notifier_deltas_total",
    "Delta events consumed, by what was done with them (routed to a subscription; filtered: "
    "before every subscription's baseline or only ignored fields changed; no-subscriber; "
    "other-type; undecodable; malformed).",
    ["outcome"],
)
COALESCED = Counter(
    "deltawatch_notifier_coalesced_changes_total",
    "Resource changes merged into a pending notification instead of sent on their own.",
)
NOTIFICATIONS = Counter(
    "deltawatch_notifier_notifications_total", "Notifications formed (net change non-empty)."
)
ATTEMPTS = Counter(
    "deltawatch_notifier_delivery_attempts_total",
    "Callback POSTs, by result class (2xx, 4xx, 5xx, error, refused).",
    ["result"],
)
DELIVERIES = Counter(
    "deltawatch_notifier_deliveries_total",
    "Notifications finished, by outcome (delivered, dead-lettered).",
    ["outcome"],
)
DLQ = Counter("deltawatch_notifier_dlq_total", "Notifications written to the DLQ topic.")
IN_FLIGHT = Gauge(
    "deltawatch_notifier_notifications_in_flight", "Notifications out and not yet finished."
)
LATENCY = Histogram(
    "deltawatch_notifier_delivery_latency_seconds",
    "End to end: from the oldest change in a notification being observed by the watcher "
    "(delta ce_time) to its 2xx.",
    buckets=(*HOP_BUCKETS, 300, 900, 3600),
)
CALLBACK_LATENCY = Histogram(
    "deltawatch_notifier_callback_latency_seconds",
    "The third hop: from the oldest delta in a notification being written by the differ "
    "(its Kafka record timestamp) to its 2xx.",
    buckets=HOP_BUCKETS,
)
TRANSACTIONS = transaction_counter("deltawatch_notifier")
