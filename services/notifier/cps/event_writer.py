"""CPS events written into a transaction the caller owns: formed and produced, never committed.

Exactly-once for CPS consumers (CONTRACT §7, issue 6) comes from one Kafka transaction per
notifier batch holding the CPS events, the notifier's state changelogs and the offsets of the
deltas they came from. That transaction belongs to the notifier's loop, which also writes
callbacks' state and results in it; so this writer never begins, commits, aborts or flushes
anything, and publishes nothing by itself. It only turns
:class:`~services.notifier.cps.events.AnchorDelta` values into records and ``produce()``s them
on the producer it is handed, inside whatever transaction is open. If the loop aborts, the
events vanish with it; if it commits, they appear once.

Per-lane memory (:class:`~services.notifier.cps.events.AnchorView`) is the caller's too: it is
advanced here, and the caller persists it in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter

from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from services.notifier.cps.events import (
    AnchorDelta,
    AnchorView,
    CpsEvent,
    EventFormat,
    cps_events,
)

EVENTS_PRODUCED = Counter(
    "deltawatch_notifier_cps_events_total",
    "CPS CloudEvents produced into a transaction, by format",
    ["format"],
)
RESOURCE_CHANGES = Counter(
    "deltawatch_notifier_cps_resource_changes_total",
    "Resource changes carried by CPS events, by change (created, deleted, modified)",
    ["change"],
)
REJECTED_ENTRIES = Counter(
    "deltawatch_notifier_cps_rejected_entries_total",
    "Net-delta entries left out of CPS events because they are not ResourceStatus entries",
)

_log = get_logger("notifier.cps")


class TransactionalProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` this edge uses (no transaction control)."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        *,
        headers: list[tuple[str, bytes]] | None = ...,
    ) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...


@dataclass(frozen=True)
class CpsEventWriter:
    """Writes CPS events to ``DELTAWATCH_CPS_TOPIC`` through a producer it does not own."""

    producer: TransactionalProducer
    topic: str
    event_format: EventFormat
    schema_set: str

    @classmethod
    def from_settings(
        cls, producer: TransactionalProducer, settings: NotifierSettings
    ) -> CpsEventWriter:
        return cls(
            producer,
            settings.cps_topic,
            event_format=settings.cps_event_format,
            schema_set=settings.cps_schema_set,
        )

    def write(self, deltas: Iterable[AnchorDelta]) -> list[CpsEvent]:
        """Produce every delta's events, in order; returns what was produced."""
        produced: list[CpsEvent] = []
        for delta in deltas:
            events = cps_events(delta, event_format=self.event_format, schema_set=self.schema_set)
            for event in events:
                self._produce(event)
            if events:
                EVENTS_PRODUCED.labels(self.event_format).inc(len(events))
                for change in delta.changes:
                    if not change.is_noop:
                        RESOURCE_CHANGES.labels(change.action).inc()
            produced.extend(events)
        return produced

    def write_net_delta(
        self,
        *,
        dataspace: str,
        anchor: str,
        view: AnchorView,
        resource_changes: Mapping[str, Sequence[Mapping[str, Any]]],
        observed_at: datetime,
        notification_id: str,
    ) -> list[CpsEvent]:
        """One lane's net delta (§5 ``resource-changes``): advance its view, produce its events.

        Entries that are not §5 ResourceStatus objects are logged and left out; the rest go.
        """
        step = view.advance(resource_changes)
        for message in step.rejected:
            REJECTED_ENTRIES.inc()
            _log.warning("cps entry rejected", dataspace=dataspace, anchor=anchor, error=message)
        delta = AnchorDelta(
            dataspace=dataspace,
            anchor=anchor,
            changes=step.changes,
            observed_at=observed_at,
            notification_id=notification_id,
            first_delta=step.first_delta,
            anchor_gone=step.anchor_gone,
        )
        return self.write([delta])

    def _produce(self, event: CpsEvent) -> None:
        record = event.record()
        while True:
            try:
                self.producer.produce(
                    self.topic, value=record.value, key=record.key, headers=record.headers
                )
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                self.producer.poll(0.5)
