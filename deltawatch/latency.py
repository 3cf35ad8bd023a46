"""Per-hop latency: the buckets every hop histogram shares and the clock arithmetic they need.

The pipeline's latency target is "p99 ≤ 100 ms" end to end, so each hop's histogram needs
buckets fine enough below 100 ms to say which hop spends it; all three workers use the same
ones so that their hops can be read side by side (and summed by a bench). The start of each
hop is a timestamp the data already carries (the Avro ``observed_at``, a Kafka record's
timestamp), stamped by another process: clocks may disagree by a little, so a negative
difference counts as 0 instead of being dropped.
"""

from __future__ import annotations

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

HOP_BUCKETS = (
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip
"""Seconds: fine below 100 ms (the target), coarse above 1 s (only to see a backlog)."""


def elapsed_s(start_s: float, now_s: float) -> float:
    """Seconds from ``start_s`` to ``now_s`` (epoch seconds), never negative (clock skew)."""
    return max(0.0, now_s - start_s)


def record_time_s(message: Message) -> float | None:
    """A consumed record's Kafka timestamp in epoch seconds; None when it has none."""
    kind, stamp_ms = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or stamp_ms <= 0:
        return None
    return float(stamp_ms) / 1000.0


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of a histogram's cumulative ``(upper bound, count)`` buckets.

    Interpolated linearly within the bucket that holds it, as Prometheus'
    ``histogram_quantile`` does, so a bench reads a worker's ``/metrics`` the way a dashboard
    would. NaN when the histogram is empty; the last finite bound when the quantile falls in
    the ``+Inf`` bucket.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return float("nan")
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank and count > below:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
