"""One watcher observation as the differ sees it, checked once at the edge.

The Avro schema only promises types, not meaning: a watch event without an instance-id or a
LISTED record whose ``object`` is not a JSON object would otherwise surface deep inside the
diff. :func:`parse_resource_event` turns a decoded record into a :class:`ResourceEvent` or
raises :class:`PoisonRecord` with a reason fit for the dead-letter topic, so the diff itself
never sees malformed input and never has to fail on it.

The object is parsed with ``orjson`` (the largest single cost of the differ with the standard
library): strict RFC 8259, so ``NaN``, ``Infinity`` and lone surrogates — which the standard
parser accepted and which then broke re-serialisation — are poison here. Integers beyond 64
bits become floats, as kube-apiserver itself does for unstructured objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from deltawatch.resource_identity import EventType


class PoisonRecord(Exception):
    """A record that can never be applied; the message says why (it goes to the DLQ)."""


MARKERS = frozenset({EventType.LIST_BEGIN, EventType.LIST_END})
_EVENT_TYPES: dict[object, EventType] = {t.value: t for t in EventType}


@dataclass(slots=True)  # not frozen: its __init__ (a setattr per field) cost ~2 µs per event
class ResourceEvent:
    type: EventType
    cluster: str
    instance_id: str | None
    group: str
    version: str
    kind: str
    namespace: str
    """Empty for cluster-scoped objects; for markers, empty means "every namespace"."""
    name: str | None
    uid: str | None
    observed_at: datetime
    list_id: str | None
    object: dict[str, Any] | None
    object_text: str | None = None
    """``object`` as the watcher wrote it (reused as the stored status when already clean)."""
    leader_epoch: int | None = None
    """The watcher leader's term (:mod:`services.differ.leader_fence`); None without election."""
    leader_lease: str = ""
    """The Lease that epoch counts (``namespace/name``); empty without election."""

    @property
    def is_marker(self) -> bool:
        return self.type in MARKERS


def _observed_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC)
    raise PoisonRecord(f"observed_at is not a timestamp: {value!r}")


def parse_resource_event(record: dict[str, Any]) -> ResourceEvent:
    """Check a decoded ``resource-event.avsc`` record; raise :class:`PoisonRecord` if unusable."""
    event_type = _EVENT_TYPES.get(record.get("type"))  # a dict: EventType(...) costs ~1 µs
    if event_type is None:
        raise PoisonRecord(f"unknown event type {record.get('type')!r}")
    for field in ("group", "version", "kind"):
        if not isinstance(record.get(field), str):
            raise PoisonRecord(f"{field} missing")
    if not record["version"] or not record["kind"]:
        raise PoisonRecord("version and kind must not be empty")
    raw_object = record.get("object")
    parsed: dict[str, Any] | None = None
    if raw_object is not None:
        try:
            loaded = orjson.loads(raw_object)
        except (TypeError, orjson.JSONDecodeError) as exc:
            raise PoisonRecord(f"object is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise PoisonRecord("object is not a JSON object")
        parsed = loaded
    if event_type in MARKERS:
        if not record.get("list_id"):
            raise PoisonRecord(f"{event_type} marker without list_id")
    else:
        if not record.get("instance_id"):
            raise PoisonRecord(f"{event_type} event without instance_id")
        if not record.get("name"):
            raise PoisonRecord(f"{event_type} event without name")
        if parsed is None and event_type is not EventType.DELETED:
            raise PoisonRecord(f"{event_type} event without object")
        if event_type is EventType.LISTED and not record.get("list_id"):
            raise PoisonRecord("LISTED event without list_id")
    return ResourceEvent(
        type=event_type,
        cluster=str(record.get("cluster") or ""),
        instance_id=record.get("instance_id"),
        group=record["group"],
        version=record["version"],
        kind=record["kind"],
        namespace=record.get("namespace") or "",
        name=record.get("name"),
        uid=record.get("uid"),
        observed_at=_observed_at(record.get("observed_at")),
        list_id=record.get("list_id"),
        object=parsed,
        object_text=raw_object,
        leader_epoch=_leader_epoch(record.get("leader_epoch")),
        leader_lease=str(record.get("leader_lease") or ""),
    )


def _leader_epoch(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PoisonRecord(f"leader_epoch is not a number: {value!r}")
