"""Leader election on a ``coordination.k8s.io/v1`` Lease: the Kubernetes side (client-go's
``resourcelock`` plus the loop of ``leaderelection.LeaderElector.Run``).

Every retry period one thread reads the Lease, lets :class:`LeaseElector` decide, and writes
what it planned with the ``resourceVersion`` it read: a 409 means someone else wrote first, and
the next round sees who. While leading, the same read + write is the renewal. The term ends
(``on_stopped``) as soon as the elector says so — renew deadline passed, or the Lease names
another holder — and a new one begins (``on_started`` with the epoch) after a successful write as
a candidate. :meth:`LeaderElection.stop` releases the Lease (holder cleared, expired at once),
so the standby takes over without waiting for the lease duration.

The publisher never waits for this thread: it asks :meth:`LeaseElector.leads_at` itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient, CoordinationV1Api, V1LeaseSpec, V1ObjectMeta
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from deltawatch.logs import get_logger
from services.watcher.lease_elector import LeaseElector, LeaseRecord


def _micro_time(moment: datetime | None) -> str | None:
    # The API server parses MicroTime as RFC 3339 with exactly six fraction digits, which
    # ``datetime.isoformat`` omits when the microseconds are 0.
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseLock:
    """Reads and writes one Lease (optimistic concurrency on its ``resourceVersion``)."""

    api: CoordinationV1Api
    namespace: str
    name: str
    timeout_s: float

    def get(self) -> tuple[LeaseRecord, str] | None:
        """The record and its resourceVersion; None when the Lease does not exist."""
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self.timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.spec or V1LeaseSpec()
        metadata = lease.metadata or V1ObjectMeta()
        record = LeaseRecord(
            holder=spec.holder_identity or None,
            lease_duration_s=int(spec.lease_duration_seconds or 0),
            acquire_time=spec.acquire_time,
            renew_time=spec.renew_time,
            transitions=int(spec.lease_transitions or 0),
        )
        return record, str(metadata.resource_version)

    def write(self, record: LeaseRecord, resource_version: str | None) -> None:
        """Create (``resource_version`` None) or replace; ApiException 409 on a conflict."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        # A plain dict, not a V1Lease: the client would write MicroTime with isoformat().
        body: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder,
                "leaseDurationSeconds": record.lease_duration_s,
                "acquireTime": _micro_time(record.acquire_time),
                "renewTime": _micro_time(record.renew_time),
                "leaseTransitions": record.transitions,
            },
        }
        if resource_version is None:
            self.api.create_namespaced_lease(self.namespace, body, _request_timeout=self.timeout_s)
        else:
            self.api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.timeout_s
            )


class LeaderElection:
    """The election loop in a daemon thread; callbacks run on that thread."""

    def __init__(
        self,
        api: ApiClient,
        elector: LeaseElector,
        *,
        namespace: str,
        name: str,
        on_started: Callable[[int], None],
        on_stopped: Callable[[str], None],
        on_answer: Callable[[], None] = lambda: None,
    ) -> None:
        timing = elector.timing
        # A call must not outlast the renew deadline, nor hold up a SIGTERM for long.
        timeout_s = min(2.0, max(0.2, timing.renew_deadline_s / 2))
        self.lock = LeaseLock(CoordinationV1Api(api), namespace, name, timeout_s)
        self.elector = elector
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.on_answer = on_answer
        self.log = get_logger("watcher.election").bind(lease=f"{namespace}/{name}")
        self._stop = threading.Event()
        self._round_lock = threading.Lock()  # a release never races a round's write
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.5) -> None:
        """End the loop, then release the Lease if this process still leads."""
        self._stop.set()
        if not self._round_lock.acquire(timeout=timeout_s):
            self.log.warning("lease call still running; the standby waits for the lease to expire")
            return
        try:
            self._release()
        finally:
            self._round_lock.release()

    def _release(self) -> None:
        released = self.elector.release(datetime.now(UTC))
        if released is None:
            return
        self.on_stopped("shutting down")
        try:
            current = self.lock.get()
            if current is not None and current[0].holder == self.elector.identity:
                self.lock.write(released, current[1])
                self.log.info("lease released")
        except (ApiException, Urllib3Error, OSError) as exc:
            self.log.warning("lease not released; the standby waits for it to expire", err=str(exc))

    def _run(self) -> None:
        period = self.elector.timing.retry_period_s
        while not self._stop.is_set():
            started = time.monotonic()
            with self._round_lock:
                if self._stop.is_set():
                    return
                self._end_term_if_over(started)
                self._round(started)
                self._end_term_if_over(time.monotonic())
            pause = period - (time.monotonic() - started)
            until = self.elector.leading_until
            if until is not None:  # wake at the deadline: the role must not outlive the term
                pause = min(pause, until - time.monotonic())
            self._stop.wait(max(0.0, pause))

    def _round(self, started: float) -> None:
        """One read + (maybe) write; a failure only means this round did not renew."""
        elector = self.elector
        try:
            current = self.lock.get()
            self.on_answer()
            now = time.monotonic()
            elector.observe(current[0] if current else None, now)
            self._end_term_if_over(now)
            planned = elector.plan(now, datetime.now(UTC))
            if planned is None:
                return
            self.lock.write(planned, current[1] if current else None)
        except ApiException as exc:
            if exc.status != 409:
                self.log.warning("lease call failed", status=exc.status, reason=exc.reason)
            return
        except (Urllib3Error, OSError) as exc:
            self.log.warning("lease call failed", error=str(exc))
            return
        if elector.written(planned, started, time.monotonic()):
            epoch = elector.epoch
            assert epoch is not None
            self.on_started(epoch)

    def _end_term_if_over(self, now: float) -> None:
        reason = self.elector.must_stop(now)
        if reason is None:
            return
        self.elector.stop()
        self.on_stopped(reason)
