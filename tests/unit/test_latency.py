"""The per-hop latency arithmetic (no clocks: times are passed in)."""

from __future__ import annotations

import math

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

from deltawatch.latency import HOP_BUCKETS, bucket_quantile, elapsed_s, record_time_s


class _Stamped:
    def __init__(self, kind: int, ms: int) -> None:
        self._stamp = (kind, ms)

    def timestamp(self) -> tuple[int, int]:
        return self._stamp


def test_elapsed_is_never_negative_under_clock_skew() -> None:
    assert elapsed_s(10.0, 10.25) == 0.25
    assert elapsed_s(10.5, 10.25) == 0.0


def test_record_time_in_seconds_or_none() -> None:
    assert record_time_s(_Stamped(TIMESTAMP_CREATE_TIME, 1_500)) == 1.5  # type: ignore[arg-type]
    assert record_time_s(_Stamped(TIMESTAMP_NOT_AVAILABLE, 0)) is None  # type: ignore[arg-type]
    assert record_time_s(_Stamped(TIMESTAMP_CREATE_TIME, -1)) is None  # type: ignore[arg-type]


def test_buckets_are_fine_below_the_100_ms_target() -> None:
    assert list(HOP_BUCKETS) == sorted(HOP_BUCKETS)
    assert sum(1 for b in HOP_BUCKETS if b <= 0.1) >= 6


def test_bucket_quantile_interpolates_within_the_bucket() -> None:
    inf = float("inf")
    buckets = [(0.01, 0.0), (0.02, 50.0), (0.05, 90.0), (0.1, 100.0), (inf, 100.0)]
    assert bucket_quantile(buckets, 0.5) == 0.02
    assert abs(bucket_quantile(buckets, 0.7) - 0.035) < 1e-9
    assert abs(bucket_quantile(buckets, 0.99) - 0.095) < 1e-9


def test_bucket_quantile_of_nothing_or_beyond_the_last_bound() -> None:
    inf = float("inf")
    assert math.isnan(bucket_quantile([(0.1, 0.0), (inf, 0.0)], 0.5))
    assert math.isnan(bucket_quantile([], 0.5))
    assert bucket_quantile([(0.1, 1.0), (inf, 10.0)], 0.99) == 0.1
