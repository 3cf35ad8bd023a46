"""Reading one consumed delta CloudEvent into what the rules need, or saying why it is skipped.

Kept apart from the rules so they see only well-formed input: a delta that cannot be decoded,
is of another CloudEvent type (heartbeats, synced notices) or lacks an instance-id is counted
and skipped here, and never reaches a subscription. Pure: bytes in, a value out.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltawatch.cloud_events import DELTA_TYPE, CloudEventDecodeError, from_kafka, source_cluster
from services.notifier.net_delta import ResourceChanges


@dataclass(frozen=True)
class DeltaInput:
    instance_id: str
    partition: int
    changes: ResourceChanges
    observed_at: float
    """Epoch seconds the change was observed (the event's ``time``, else the record's)."""
    delta_at: float | None = None
    """Epoch seconds the differ wrote the delta (its record timestamp): the last hop's start."""


@dataclass(frozen=True)
class SkippedDelta:
    reason: str
    """The ``deltawatch_notifier_deltas_total`` label: undecodable, other-type, malformed."""
    error: str | None = None


def read_delta(
    key: bytes | None,
    value: bytes | None,
    headers: object,
    partition: int,
    record_time_ms: int,
) -> DeltaInput | SkippedDelta:
    try:
        if isinstance(headers, dict):
            raise CloudEventDecodeError("headers are not a list")
        listed = headers if isinstance(headers, list) else []
        event = from_kafka(
            key, value, [(name, raw) for name, raw in listed if isinstance(raw, bytes)]
        )
    except CloudEventDecodeError as exc:
        return SkippedDelta("undecodable", str(exc))
    if event.get_type() != DELTA_TYPE:
        return SkippedDelta("other-type")
    data = event.get_data()
    try:
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        instance_id = data.get("instance-id") or event.get_subject()
        if not isinstance(instance_id, str):
            raise ValueError("no instance-id")
        cluster = data.get("cluster") or source_cluster(event.get_source())
        if not isinstance(cluster, str) or not cluster:
            raise ValueError("no cluster")
        changes = ResourceChanges.from_json(data.get("resource-changes") or {}, cluster)
    except ValueError as exc:
        return SkippedDelta("malformed", str(exc))
    event_time = event.get_time()
    observed_at = event_time.timestamp() if event_time is not None else record_time_ms / 1000
    delta_at = record_time_ms / 1000 if record_time_ms > 0 else None
    return DeltaInput(instance_id, partition, changes, observed_at, delta_at)
