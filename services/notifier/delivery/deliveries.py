"""One coroutine per notification in flight: attempt, judge, wait, attempt again.

The transaction loop owns all state; a delivery only knows its notification (webhook-id and
frozen body, both already durable in the outbox before the first attempt) and reports each
attempt back through a queue. The loop records it (last-notify-time / -status, attempts)
and, on the final verdict, clears the outbox or writes the dead letter. So a crash at any
point leaves the notification in the outbox, and the restarted notifier sends the same body
with the same webhook-id.

The subscription's URL, secret and interval are looked up before every attempt, so an
update command takes effect on the next retry. At most ``DELTAWATCH_DELIVERY_CONCURRENCY``
POSTs run at once (the others wait for a slot, in order): enough that a handful of hanging
endpoints leave plenty for everyone else, bounded so that ten thousand notifications formed
in one turn do not open ten thousand sockets at once.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deltawatch.latency import elapsed_s
from services.notifier import metrics
from services.notifier.delivery.callback_client import AttemptResult, CallbackClient
from services.notifier.delivery.retry_policy import Verdict, judge


@dataclass(frozen=True)
class Target:
    url: str
    key: bytes | None
    interval_s: float
    problem: str | None = None
    """Why this target cannot be called at all (e.g. its secret does not open): dead-letter."""


@dataclass(frozen=True)
class DeliveryJob:
    key: str
    webhook_id: str
    body: bytes
    attempts: int = 0
    first_attempt_at: float | None = None
    not_before: float = 0.0
    """Epoch seconds: the throttle window (or a persisted backoff) still closed until then."""
    observed_at: float | None = None
    """When the oldest change in it was observed, for the latency histogram."""
    delta_at: float | None = None
    """When the oldest delta in it was written, for the last hop's histogram."""


@dataclass(frozen=True)
class AttemptReport:
    key: str
    webhook_id: str
    result: AttemptResult
    attempts: int
    first_attempt_at: float
    verdict: Verdict


@dataclass(eq=False)
class Deliveries:
    client: CallbackClient
    reports: asyncio.Queue[AttemptReport]
    target_of: Callable[[str], Target | None]
    max_attempts: int
    max_age_s: float
    concurrency: int = 500
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, job: DeliveryJob) -> None:
        self.cancel(job.key)
        task = asyncio.create_task(self._run(job), name=f"deliver {job.key}")
        self._tasks[job.key] = task
        metrics.IN_FLIGHT.set(len(self._tasks))
        task.add_done_callback(functools.partial(self._forget, job.key))

    def cancel(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        metrics.IN_FLIGHT.set(len(self._tasks))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        metrics.IN_FLIGHT.set(0)

    def _forget(self, key: str, done: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is done:
            del self._tasks[key]
        metrics.IN_FLIGHT.set(len(self._tasks))

    async def _run(self, job: DeliveryJob) -> None:
        attempts = job.attempts
        first_attempt_at = job.first_attempt_at
        wait_s = job.not_before - time.time()
        while True:
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            target = self.target_of(job.key)
            if target is None:
                return
            if target.problem is not None:
                now = time.time()
                result = AttemptResult(now, 0, target.problem, refused=True, ended_at=now)
            else:
                async with self._slots:
                    result = await self.client.post(
                        target.url, job.webhook_id, job.body, target.key
                    )
            attempts += 1
            first_attempt_at = first_attempt_at or result.at
            metrics.ATTEMPTS.labels(_result_class(result)).inc()
            if result.refused:
                verdict = Verdict("dead", reason=result.error or "refused")
            else:
                verdict = judge(
                    status=result.status,
                    error=result.error,
                    attempts=attempts,
                    first_attempt_at=first_attempt_at,
                    now=time.time(),
                    retry_after=result.retry_after_s,
                    interval_s=target.interval_s,
                    max_attempts=self.max_attempts,
                    max_age_s=self.max_age_s,
                    jitter=random.random(),
                )
            if verdict.outcome == "delivered":
                _observe_latency(job, time.time())
            self.reports.put_nowait(
                AttemptReport(job.key, job.webhook_id, result, attempts, first_attempt_at, verdict)
            )
            if verdict.outcome != "retry":
                return
            wait_s = verdict.delay_s


def _observe_latency(job: DeliveryJob, now: float) -> None:
    """End to end (the oldest change's observation) and the last hop (its delta written)."""
    if job.observed_at is not None:
        metrics.LATENCY.observe(elapsed_s(job.observed_at, now))
    if job.delta_at is not None:
        metrics.CALLBACK_LATENCY.observe(elapsed_s(job.delta_at, now))


def _result_class(result: AttemptResult) -> str:
    if result.refused:
        return "refused"
    if result.status == 0:
        return "error"
    return f"{result.status // 100}xx"
