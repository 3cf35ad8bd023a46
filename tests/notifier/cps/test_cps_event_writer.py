"""CPS events through a real broker, inside transactions the caller owns (CONTRACT §7)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from confluent_kafka import Consumer, TopicPartition

from deltawatch.cloud_events import from_kafka
from deltawatch.kafka_clients import make_admin, make_producer, make_reader
from deltawatch.schema_files import load_schema_document
from deltawatch.settings import NotifierSettings
from deltawatch.topics import contract_topics, ensure_topics
from services.notifier.cps.event_writer import CpsEventWriter
from services.notifier.cps.events import AnchorView, EventFormat
from tests.asyncapi.event_interface import EventInterface

pytestmark = pytest.mark.kafka

SCHEMA_FILES: dict[EventFormat, str] = {
    "delta": "cps-delta-event-data.schema.json",
    "cps": "cps-data-updated-event.schema.json",
}
MOMENT = datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=UTC)
POD_V1 = {"kind": "Pod", "metadata": {"name": "web-0"}, "status": {"phase": "Pending"}}
POD_V2 = {"kind": "Pod", "metadata": {"name": "web-0"}, "status": {"phase": "Running"}}


def _entry(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "web-0",
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": status,
    }


def _settings(topic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fmt: str) -> Any:
    for name, value in topic_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DELTAWATCH_CPS_EVENT_FORMAT", fmt)
    settings = NotifierSettings()
    ensure_topics(make_admin(settings), [contract_topics(settings)["cps"]])
    return settings


def _read_committed(settings: NotifierSettings, expected: int) -> list[Any]:
    """Every committed record of the CPS topic, reading each partition to its end."""
    reader: Consumer = make_reader(settings)
    metadata = reader.list_topics(settings.cps_topic, timeout=10)
    partitions = list(metadata.topics[settings.cps_topic].partitions)
    reader.assign([TopicPartition(settings.cps_topic, p, 0) for p in partitions])
    records: list[Any] = []
    at_end: set[int] = set()
    try:
        for _ in range(200):
            if len(at_end) == len(partitions) and len(records) >= expected:
                break
            msg = reader.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    at_end.add(msg.partition())
                    continue
                raise AssertionError(msg.error())
            at_end.discard(msg.partition())
            records.append(msg)
        else:
            raise AssertionError(f"topic not read to its end; got {len(records)} records")
    finally:
        reader.close()
    return records


@pytest.mark.parametrize("event_format", ["delta", "cps"])
def test_committed_events_arrive_aborted_ones_never(
    topic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, event_format: EventFormat
) -> None:
    settings = _settings(topic_env, monkeypatch, event_format)
    producer = make_producer(settings, transactional_id=f"cps-test-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    writer = CpsEventWriter.from_settings(producer, settings)
    view = AnchorView()

    producer.begin_transaction()
    created = writer.write_net_delta(
        dataspace="ds1",
        anchor="inst-1",
        view=view,
        resource_changes={"created": [_entry(POD_V1)]},
        observed_at=MOMENT,
        notification_id="1",
    )
    producer.commit_transaction(30)

    # An aborted batch: its events must never reach a read_committed consumer, and the
    # caller restores its view (here: simply by not keeping the advanced copy).
    scratch = AnchorView.from_json(view.to_json(), "east")
    producer.begin_transaction()
    aborted = writer.write_net_delta(
        dataspace="ds1",
        anchor="inst-1",
        view=scratch,
        resource_changes={"deleted": [_entry(POD_V1)]},
        observed_at=MOMENT,
        notification_id="2",
    )
    producer.abort_transaction(30)

    producer.begin_transaction()
    modified = writer.write_net_delta(
        dataspace="ds1",
        anchor="inst-1",
        view=view,
        resource_changes={"modified": [_entry(POD_V2)], "created": [{"bad": "entry"}]},
        observed_at=MOMENT,
        notification_id="2",
    )
    producer.commit_transaction(30)
    assert len(created) == len(aborted) == len(modified) == 1

    records = _read_committed(settings, expected=2)
    schema = load_schema_document(SCHEMA_FILES[event_format])
    assert [r.key() for r in records] == [b"ds1:inst-1", b"ds1:inst-1"]
    assert len({r.partition() for r in records}) == 1, "one anchor, one partition, in order"
    decoded = [from_kafka(r.key(), r.value(), r.headers()) for r in records]
    assert [e.get_id() for e in decoded] == [created[0].event_id, modified[0].event_id]
    for event in decoded:
        jsonschema.validate(event.get_data(), schema, cls=jsonschema.Draft202012Validator)
    # The records as schemas/asyncapi.yaml describes the CPS topic: key, headers and payload.
    message = {"delta": "cpsDeltaEvent", "cps": "cpsDataUpdatedEvent"}[event_format]
    interface = EventInterface()
    assert [interface.identify("cps", r.key(), r.headers(), r.value()) for r in records] == [
        message,
        message,
    ]
    first, second = (e.get_data() for e in decoded)
    if event_format == "delta":
        assert [first["operation"], second["operation"]] == ["CREATE", "UPDATE"]
        assert second["data"] == [
            {
                "action": "UPDATE",
                "xpath": "/instance-status/resources[@cluster='east'"
                " and @apiVersion='v1' and @kind='Pod'"
                " and @namespace='ns' and @name='web-0']",
                "payload": {"status": {"phase": "Running"}},
            }
        ]
    else:
        assert [first["eventPayload"]["action"], second["eventPayload"]["action"]] == [
            "create",
            "replace",
        ]
        assert decoded[1].get_extension("correlationid") == "ds1:inst-1"
        assert json.loads(second["eventPayload"]["cloudEventData"]["sourceData"]) == {
            "status": {"phase": "Pending"}
        }
