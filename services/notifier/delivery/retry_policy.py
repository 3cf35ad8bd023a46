"""What to do after one callback attempt: the retry rule of CONTRACT §6.

2xx is delivered. 408, 429, 5xx, timeouts and connection errors are retried with
exponential backoff and jitter, waiting at least what ``Retry-After`` asks and at least the
subscription's min-notify-interval (two POSTs are never closer than that), until
``DELTAWATCH_DELIVERY_MAX_ATTEMPTS`` attempts or ``DELTAWATCH_DELIVERY_MAX_AGE_S`` since the
first attempt; other statuses (4xx, and 3xx: redirects are not followed) go to the DLQ at
once. The schedule: 1 s, 2 s, 4 s … capped at 5 min, each scaled by a random factor in
[0.5, 1] so that subscribers that failed together do not retry together.

Pure: the random factor and times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

BASE_DELAY_S = 1.0
MAX_DELAY_S = 300.0
RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["delivered", "retry", "dead"]
    delay_s: float = 0.0
    reason: str = ""


def is_retryable(status: int) -> bool:
    """``status`` 0 stands for "no response" (timeout, connection error)."""
    return status == 0 or status in RETRIED_STATUSES or 500 <= status <= 599


def backoff_s(attempts: int, jitter: float) -> float:
    """Delay after the ``attempts``-th failed attempt; ``jitter`` in [0, 1)."""
    raw = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** max(0, attempts - 1))
    return float(raw * (0.5 + 0.5 * jitter))


def retry_after_s(header: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date)."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - now).total_seconds())


def judge(
    *,
    status: int,
    error: str | None,
    attempts: int,
    first_attempt_at: float,
    now: float,
    retry_after: float | None,
    interval_s: float,
    max_attempts: int,
    max_age_s: float,
    jitter: float,
) -> Verdict:
    """The verdict after attempt number ``attempts`` ended with ``status`` (0 = no answer)."""
    if 200 <= status <= 299:
        return Verdict("delivered")
    what = f"HTTP {status}" if status else (error or "no response")
    if not is_retryable(status):
        return Verdict("dead", reason=f"{what}: not retried")
    if attempts >= max_attempts:
        return Verdict("dead", reason=f"{what} after {attempts} attempts")
    delay = max(backoff_s(attempts, jitter), retry_after or 0.0, interval_s)
    if now + delay - first_attempt_at > max_age_s:
        return Verdict("dead", reason=f"{what}; next retry would exceed the maximum age")
    return Verdict("retry", delay_s=delay, reason=what)
