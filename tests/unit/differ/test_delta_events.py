"""The differ writes CloudEvent headers itself; they must be exactly what the SDK path writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from deltawatch.cloud_events import (
    DELTA_TYPE,
    HEARTBEAT_TYPE,
    SYNCED_TYPE,
    KafkaRecord,
    from_kafka,
    new_event,
    to_kafka,
)
from deltawatch.resource_identity import ResourceKey
from services.differ.delta_events import delta_record, heartbeat_record, synced_record
from services.differ.resource_diff import InstanceDelta, ReportedResource, SyncedNotice
from services.differ.snapshot import ListScope

SOURCE = "/deltawatch/clusters/c1"
TIMES = [
    datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
]
INSTANCES = ["inst-1", "ïnst/é 😀"]


def sdk_record(
    event_type: str, event_id: str, time: datetime, subject: str | None, key: str | None
) -> KafkaRecord:
    event = new_event(
        event_type=event_type, source=SOURCE, event_id=event_id, data={}, time=time, subject=subject
    )
    return to_kafka(event, key)


def same_envelope(ours: KafkaRecord, sdk: KafkaRecord) -> None:
    assert ours.key == sdk.key
    assert ours.headers == sdk.headers
    decoded = from_kafka(ours.key, ours.value, ours.headers)
    assert decoded.get_data() == json.loads(ours.value)


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("instance", INSTANCES)
def test_delta_headers_equal_the_sdk_binding(time: datetime, instance: str) -> None:
    key = ResourceKey("c1", "", "v1", "Pod", "ns", "web-0")
    delta = InstanceDelta(instance, "c1", 7, time, [ReportedResource(key, b'{"a":1}')], [], [])
    ours = delta_record(delta)
    same_envelope(ours, sdk_record(DELTA_TYPE, f"{instance}:7", time, instance, instance))
    data = json.loads(ours.value)
    assert data["resource-changes"]["created"][0] == {
        "name": "web-0",
        "namespace": "ns",
        "cluster": "c1",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {"a": 1},
    }
    assert (data["sequence"], data["cluster"]) == (7, "c1")


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("instance", INSTANCES)
def test_synced_headers_equal_the_sdk_binding(time: datetime, instance: str) -> None:
    scope = ListScope("c1", "apps", "v1", "Deployment", "")
    notice = SyncedNotice(instance, 3, "list-1", scope, time)
    ours = synced_record(notice)
    event_id = f"{instance}:synced:apps/v1/Deployment/:list-1"
    same_envelope(ours, sdk_record(SYNCED_TYPE, event_id, time, instance, instance))


@pytest.mark.parametrize("time", TIMES)
def test_heartbeat_headers_equal_the_sdk_binding(time: datetime) -> None:
    ours = heartbeat_record(partition=2, time=time, cluster="c1", source=SOURCE)
    stamp = json.loads(ours.value)["time"]
    same_envelope(ours, sdk_record(HEARTBEAT_TYPE, f"heartbeat:2:{stamp}", time, None, None))
