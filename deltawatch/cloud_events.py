"""CloudEvents 1.0 in Kafka binary content mode, through the ``cloudevents`` SDK's Kafka binding.

The SDK maps attributes to ``ce_*`` headers and ``datacontenttype`` to ``content-type``; we only
add what the contract fixes beyond it: times with millisecond precision (CONTRACT §4, "every
time … RFC 3339 UTC with milliseconds") and a strict decode that refuses a record whose data is
not the JSON object the content type promises, so a poison message is caught at the edge. The
``ce_type`` values of deltawatch's own events live here too, so that the writer and every reader
name them from one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

JSON = "application/json"
_FORMAT = JSONFormat()

# The types of the events the differ writes to the deltas topic (CONTRACT §5), defined here
# once: the differ writes them, the notifier, the tests and the benches select by them.
DELTA_TYPE = "org.deltawatch.instance.status.delta"
SYNCED_TYPE = "org.deltawatch.instance.status.synced"
HEARTBEAT_TYPE = "org.deltawatch.instance.status.heartbeat"


def cluster_source(cluster: str) -> str:
    """``ce_source`` of the differ's events about ``cluster`` (CONTRACT §5, §10)."""
    return f"{_CLUSTER_SOURCE}{cluster}"


def source_cluster(source: str) -> str | None:
    """The cluster a :func:`cluster_source` names; None for any other source."""
    return source.removeprefix(_CLUSTER_SOURCE) if source.startswith(_CLUSTER_SOURCE) else None


_CLUSTER_SOURCE = "/deltawatch/clusters/"


class CloudEventDecodeError(Exception):
    """A Kafka record that is not a binary-mode CloudEvent with JSON object data."""


def rfc3339_ms(moment: datetime) -> str:
    """``2026-11-24T10:15:30.123Z``: UTC, milliseconds, as the contract writes every time."""
    # isoformat truncates to milliseconds as the contract wants, at a fraction of strftime's cost
    # (the differ stamps every delta with it).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KafkaRecord:
    """What a producer needs to send one event: key, value and headers."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def new_event(
    *,
    event_type: str,
    source: str,
    event_id: str,
    data: dict[str, Any],
    time: datetime | None = None,
    subject: str | None = None,
    dataschema: str | None = None,
    extensions: dict[str, str] | None = None,
) -> CloudEvent:
    attributes: dict[str, Any] = {
        "id": event_id,
        "source": source,
        "type": event_type,
        "specversion": "1.0",
        "time": (time or utc_now()).astimezone(UTC),
        "datacontenttype": JSON,
    }
    if subject is not None:
        attributes["subject"] = subject
    if dataschema is not None:
        attributes["dataschema"] = dataschema
    attributes.update(extensions or {})
    return CloudEvent(attributes, data)


def to_kafka(event: CloudEvent, key: str | bytes | None) -> KafkaRecord:
    message = to_binary(event, _FORMAT, key_mapper=lambda _event: key)
    headers = dict(message.headers)
    event_time = event.get_time()
    if event_time is not None:
        headers["ce_time"] = rfc3339_ms(event_time).encode()
    encoded_key = key.encode() if isinstance(key, str) else key
    return KafkaRecord(encoded_key, message.value, list(headers.items()))


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None
) -> CloudEvent:
    header_map = {name: raw for name, raw in (headers or []) if raw is not None}
    if "ce_specversion" not in header_map:
        raise CloudEventDecodeError("no ce_specversion header: not a binary-mode CloudEvent")
    try:
        event = from_binary(KafkaMessage(header_map, key, value or b""), _FORMAT)
    except Exception as exc:
        raise CloudEventDecodeError(f"invalid CloudEvent: {exc}") from exc
    if not isinstance(event, CloudEvent):
        raise CloudEventDecodeError("unsupported CloudEvents specversion")
    data = event.get_data()
    content_type = event.get_datacontenttype() or JSON
    if content_type.startswith(JSON) and value and not isinstance(data, dict):
        raise CloudEventDecodeError("data is not a JSON object")
    return event


def header_value(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for header_name, raw in headers or []:
        if header_name == name and raw is not None:
            return raw.decode("utf-8", errors="replace")
    return None
