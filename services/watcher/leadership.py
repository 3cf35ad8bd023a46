"""Run the watches only while this watcher leads its cluster's active/standby pair.

Everything else of the process (HTTP, Kafka producer, subscription feed) runs in both members;
only the watch targets follow the role. A new term starts every desired watch afresh, so its
initial lists are the catch-up, exactly as after a restart. The end of a term stops them and
drops what was not yet handed to Kafka: the next leader's lists republish the truth, and a
record of an ended term reaching Kafka late is dropped by the differ by its epoch.

The election thread calls :meth:`Leadership.lead` / :meth:`Leadership.stand_by`; the main loop
calls :meth:`Leadership.reconcile` when the subscriptions change; one lock orders them. Without
leader election the process simply leads from the start (epoch None).
"""

from __future__ import annotations

import threading

from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from services.watcher.kinds import WatchTarget
from services.watcher.metrics import WatcherMetrics
from services.watcher.publisher import Publisher
from services.watcher.records import Leader
from services.watcher.supervisor import Supervisor

STOP_WATCHES_S = 2.0


class Leadership:
    def __init__(
        self,
        supervisor: Supervisor,
        publisher: Publisher,
        health: HealthState,
        metrics: WatcherMetrics,
        *,
        cluster: str,
        lease: str | None,
    ) -> None:
        self.supervisor = supervisor
        self.publisher = publisher
        self.health = health
        self.metrics = metrics
        self.log = get_logger("watcher.leadership").bind(cluster=cluster, lease=lease)
        self._lock = threading.Lock()
        self._desired: frozenset[WatchTarget] | None = None
        self._closed = False
        self.leading = False
        self.lease = lease
        self.epoch: int | None = None

    @property
    def leader(self) -> Leader | None:
        """The term the watches started now put on their records (None: no election)."""
        if self.lease is None or self.epoch is None:
            return None
        return Leader(self.lease, self.epoch)

    def lead(self, epoch: int | None) -> None:
        with self._lock:
            if self._closed:
                return
            self.leading = True
            self.epoch = epoch
            if self._desired is not None:
                self.supervisor.reconcile(self._desired)
        self.metrics.leader.set(1)
        self.metrics.leader_transitions.labels("leader").inc()
        self.health.describe("role", "leader")
        self.log.info("leading", leader_epoch=epoch)

    def stand_by(self, reason: str | None = None) -> None:
        """Stop the watches and drop what they queued; ``reason`` None: not led before."""
        # The role says standby at once: the publisher's gate already refuses this term's
        # records, whatever the watches still do while they stop.
        self.metrics.leader.set(0)
        self.health.describe("role", "standby")
        if reason is not None:
            self.metrics.leader_transitions.labels("standby").inc()
            self.log.info("lost leadership", reason=reason)
        with self._lock:
            self.leading = False
            self.epoch = None
            self.supervisor.stop_all(STOP_WATCHES_S)
            dropped = self.publisher.drop_pending()
        self.log.info("standing by", dropped=dropped)

    def reconcile(self, desired: frozenset[WatchTarget]) -> None:
        """The watch targets wanted now; they run only while leading."""
        with self._lock:
            self._desired = desired
            if self.leading and not self._closed:
                self.supervisor.reconcile(desired)

    def close(self) -> None:
        """Shutting down: stop the watches, and never start them again."""
        with self._lock:
            self._closed = True
            self.supervisor.stop_all(STOP_WATCHES_S)
