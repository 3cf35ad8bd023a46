"""One thread per watch target: run its list+watch and put Avro records into the outbox.

This is where the layers meet: :mod:`listwatch` observations become routed records
(:mod:`instances`, :mod:`records`), encoded once here so the publisher thread only
produces. Readiness for the target is reached when the LIST_END of its first list has been
acknowledged on every partition, not merely read from the API server, so a ready watcher
has really published the present state. A kind the server does not serve (yet) does not
hold readiness back: it is retried in the background and logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from kubernetes.client import ApiClient

from deltawatch.avro_serde import AvroSerde
from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from deltawatch.resource_identity import EventType
from services.watcher import kube_api
from services.watcher.backoff import Backoff
from services.watcher.instances import InstanceIndex
from services.watcher.kinds import WatchTarget
from services.watcher.listwatch import Hooks, ListBegan, Listed, ListEnded, ListWatch, Watched
from services.watcher.metrics import WatcherMetrics
from services.watcher.outbox import Outbox, Outgoing
from services.watcher.records import (
    Leader,
    ListReason,
    ListRun,
    Obj,
    marker_record,
    object_record,
)


class TargetWatch:
    def __init__(
        self,
        target: WatchTarget,
        *,
        api: ApiClient,
        serde: AvroSerde,
        outbox: Outbox,
        metrics: WatcherMetrics,
        health: HealthState,
        cluster: str,
        instance_label: str,
        page_size: int,
        watch_timeout_s: int,
        cluster_scope_owner: bool = True,
        leader: Leader | None = None,
    ) -> None:
        self.target = target
        self.kind = str(target.gvk)
        self.serde = serde
        self.outbox = outbox
        self.metrics = metrics
        self.health = health
        self.cluster = cluster
        self.cluster_scope_owner = cluster_scope_owner
        self.leader = leader
        self.condition = f"listed:{target}"
        self.stop = threading.Event()
        self.index = InstanceIndex(instance_label)
        self.log = get_logger("watcher.target").bind(target=str(target))
        self._stream: kube_api.WatchStream | None = None
        self._first_list_done = False
        self.listwatch = ListWatch(
            api=api,
            target=target,
            label_selector=instance_label,  # existence: every instance's objects
            page_size=page_size,
            watch_timeout_s=watch_timeout_s,
            stop=self.stop,
            hooks=Hooks(
                on_served=self._on_served,
                on_not_served=self._on_not_served,
                on_watch_restart=lambda cause: self.metrics.watch_restarts.labels(
                    self.kind, cause
                ).inc(),
                on_stream=self._on_stream,
                on_access=self._on_access,
            ),
        )
        self._thread = threading.Thread(target=self._run, name=f"watch {target}", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.health.unmet(self.condition)
        self._thread.start()

    def request_stop(self) -> None:
        self.stop.set()
        stream = self._stream
        if stream is not None:
            stream.interrupt()  # wakes a read waiting on a quiet watch

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        self.health.met(self.condition)

    # -- hooks ----------------------------------------------------------------------------

    def _on_served(self, served: kube_api.ServedKind) -> None:
        self.health.met("kubernetes")  # discovery answered: the API server is reachable
        self.metrics.kind_served.labels(self.kind).set(1)
        if not self._first_list_done:
            self.health.unmet(self.condition)

    def _on_not_served(self, _reason: str) -> None:
        self.health.met("kubernetes")  # a 404 from discovery is an answer too
        self.metrics.kind_served.labels(self.kind).set(0)
        self.health.met(self.condition)

    def _on_access(self, allowed: bool) -> None:
        self.metrics.kind_forbidden.labels(self.kind).set(0 if allowed else 1)
        if not allowed:
            # Refused is an answer: a watcher whose role lacks one kind still serves the others,
            # and holding readiness would keep it out of service for good.
            self.health.met("kubernetes")
            self.health.met(self.condition)

    def _on_stream(self, stream: kube_api.WatchStream | None) -> None:
        self._stream = stream
        if stream is not None and self.stop.is_set():
            stream.interrupt()

    def _first_list_published(self) -> None:
        self._first_list_done = True
        self.health.met(self.condition)
        self.log.info("first list published")

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        served = self.listwatch.discover()
        if served is None:
            return
        if served.namespaced is False and not self.cluster_scope_owner:
            # A cluster-scoped kind is watched once, by the target of the first namespace.
            self._on_not_served("cluster-scoped; watched by another target")
            self.metrics.kind_served.labels(self.kind).set(1)
            return
        reason: ListReason = "initial"
        backoff = Backoff(base_s=1.0, cap_s=30.0)
        while not self.stop.is_set():
            try:
                for observation in self.listwatch.run(served, reason):
                    if not self._handle(observation):
                        return
                return
            except Exception:
                # A bug or an object we cannot encode must not end this kind's watch for
                # good: log it, and start over with a relist after a pause.
                self.log.exception("watch loop failed; relisting")
                reason = "error"
                self.stop.wait(backoff.next_delay())

    def _handle(self, observation: object) -> bool:
        now = datetime.now(UTC)
        if isinstance(observation, Watched):
            self.metrics.since_last_event.mark(self.kind)
            for routed in self.index.watched(_event_type(observation.event_type), observation.obj):
                if not self._put(routed.event_type, observation.obj, routed.instance_id, now):
                    return False
            return True
        if isinstance(observation, Listed):
            self.metrics.since_last_event.mark(self.kind)
            instance = self.index.listed(observation.obj)
            if instance is None:
                return True
            record = object_record(
                EventType.LISTED,
                self.target,
                observation.obj,
                instance,
                cluster=self.cluster,
                observed_at=now,
                list_run=observation.run,
                leader=self.leader,
            )
            return self._enqueue(record, instance, EventType.LISTED)
        if isinstance(observation, ListBegan):
            self.index.start_list()
            self.metrics.relists.labels(self.kind, observation.run.reason).inc()
            self.log.info(
                "list begins",
                list_id=observation.run.list_id,
                reason=observation.run.reason,
                resource_version=observation.run.resource_version,
            )
            return self._mark(EventType.LIST_BEGIN, observation.run, observation.served, now)
        if isinstance(observation, ListEnded):
            self.log.info("list ends", list_id=observation.run.list_id, objects=observation.count)
            on_delivered = None if self._first_list_done else self._first_list_published
            return self._mark(
                EventType.LIST_END, observation.run, observation.served, now, on_delivered
            )
        return True

    def _mark(
        self,
        event_type: Literal[EventType.LIST_BEGIN, EventType.LIST_END],
        run: ListRun,
        served: kube_api.ServedKind,
        now: datetime,
        on_delivered: Callable[[], None] | None = None,
    ) -> bool:
        """A list marker, sent to every partition (no key)."""
        record = marker_record(
            event_type,
            self.target,
            run,
            cluster=self.cluster,
            observed_at=now,
            namespaced=served.namespaced,
            leader=self.leader,
        )
        return self._enqueue(record, None, event_type, on_delivered)

    def _put(self, event_type: EventType, obj: Obj, instance: str, now: datetime) -> bool:
        record = object_record(
            event_type,
            self.target,
            obj,
            instance,
            cluster=self.cluster,
            observed_at=now,
            leader=self.leader,
        )
        # Only watched changes time the first hop: a list's objects are state, not changes.
        return self._enqueue(record, instance, event_type, observed_at=now.timestamp())

    def _enqueue(
        self,
        record: Obj,
        instance: str | None,
        event_type: str,
        on_delivered: Callable[[], None] | None = None,
        observed_at: float | None = None,
    ) -> bool:
        item = Outgoing(
            value=self.serde.encode(record),
            key=instance.encode() if instance is not None else None,
            kind=self.kind,
            event_type=event_type,
            all_partitions=instance is None,
            on_delivered=on_delivered,
            observed_at=observed_at,
        )
        return self.outbox.put(item, self.stop)


def _event_type(text: str) -> EventType:
    if text == "ADDED":
        return EventType.ADDED
    if text == "DELETED":
        return EventType.DELETED
    return EventType.MODIFIED
