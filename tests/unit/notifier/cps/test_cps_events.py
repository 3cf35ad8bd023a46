"""An anchor's net delta → CPS CloudEvents in both formats of CONTRACT §7, schema-checked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from deltawatch.cloud_events import from_kafka
from deltawatch.resource_identity import ResourceKey
from deltawatch.schema_files import load_schema_document
from services.notifier.cps.events import (
    AnchorDelta,
    AnchorView,
    CpsEvent,
    EventFormat,
    ResourceChange,
    change_from_entry,
    cps_events,
    delta_operation,
    observed_timestamp,
)
from services.notifier.cps.merge_patch import apply_merge_patch

DELTA_SCHEMA = load_schema_document("cps-delta-event-data.schema.json")
CPS_SCHEMA = load_schema_document("cps-data-updated-event.schema.json")
MOMENT = datetime(2026, 11, 24, 10, 15, 30, 123456, tzinfo=UTC)

POD = ResourceKey("east", "", "v1", "Pod", "ns", "web-0")
POD_XPATH = (
    "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod'"
    " and @namespace='ns' and @name='web-0']"
)
DEPLOY = ResourceKey("east", "apps", "v1", "Deployment", "ns", "web")
DEPLOY_XPATH = (
    "/instance-status/resources[@cluster='east' and @apiVersion='apps/v1' and @kind='Deployment'"
    " and @namespace='ns' and @name='web']"
)
CM = ResourceKey("east", "", "v1", "ConfigMap", "ns", "it's-config")
CM_XPATH = (
    "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='ConfigMap'"
    " and @namespace='ns' and @name='it''s-config']"
)
POD_V1 = {
    "kind": "Pod",
    "metadata": {"name": "web-0", "labels": {"app": "web", "tier": "front"}},
    "status": {"phase": "Pending"},
}
POD_V2 = {
    "kind": "Pod",
    "metadata": {"name": "web-0", "labels": {"app": "web"}},
    "status": {"phase": "Running", "podIP": "10.0.0.7"},
}
DEPLOY_OBJ = {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}
CM_OBJ = {"kind": "ConfigMap", "metadata": {"name": "it's-config"}, "data": {"k": "v"}}


def _delta(
    changes: list[ResourceChange],
    *,
    first: bool = False,
    gone: bool = False,
    notification_id: str = "n-1",
) -> AnchorDelta:
    return AnchorDelta(
        dataspace="ds1",
        anchor="inst-1",
        changes=changes,
        observed_at=MOMENT,
        notification_id=notification_id,
        first_delta=first,
        anchor_gone=gone,
    )


def _events(delta: AnchorDelta, event_format: EventFormat) -> list[CpsEvent]:
    events = cps_events(delta, event_format=event_format, schema_set="k8s-instance-status")
    schema = DELTA_SCHEMA if event_format == "delta" else CPS_SCHEMA
    for event in events:
        jsonschema.validate(event.data, schema, cls=jsonschema.Draft202012Validator)
    return events


MIXED = [
    ResourceChange("modified", POD, old=POD_V1, new=POD_V2),
    ResourceChange("deleted", CM, old=CM_OBJ),
    ResourceChange("created", DEPLOY, new=DEPLOY_OBJ),
]


def test_delta_format_one_event_per_net_delta() -> None:
    (event,) = _events(_delta(MIXED), "delta")
    assert event.key == "ds1:inst-1"
    assert event.data == {
        "observedTimestamp": "2026-11-24T10:15:30.123+0000",
        "dataspaceName": "ds1",
        "schemaSetName": "k8s-instance-status",
        "anchorName": "inst-1",
        "operation": "UPDATE",
        "xpath": "/instance-status",
        "data": [
            {"action": "ADD", "xpath": DEPLOY_XPATH, "payload": DEPLOY_OBJ},
            {"action": "DELETE", "xpath": CM_XPATH, "payload": CM_OBJ},
            {
                "action": "UPDATE",
                "xpath": POD_XPATH,
                "payload": {
                    "metadata": {"labels": {"tier": None}},
                    "status": {"phase": "Running", "podIP": "10.0.0.7"},
                },
            },
        ],
    }
    update = event.data["data"][2]["payload"]
    assert apply_merge_patch(POD_V1, update) == POD_V2


def test_cps_format_one_event_per_changed_resource() -> None:
    events = _events(_delta(MIXED), "cps")
    assert [e.data["eventPayload"]["action"] for e in events] == ["create", "remove", "replace"]
    assert [e.data["eventPayload"]["xpath"] for e in events] == [DEPLOY_XPATH, CM_XPATH, POD_XPATH]
    assert {e.key for e in events} == {"ds1:inst-1"}
    assert {e.extensions["correlationid"] for e in events} == {"ds1:inst-1"}
    create, remove, replace = (e.data["eventPayload"] for e in events)
    assert create == {
        "observedTimestamp": "2026-11-24T10:15:30.123+0000",
        "dataspaceName": "ds1",
        "schemaSetName": "k8s-instance-status",
        "anchorName": "inst-1",
        "action": "create",
        "xpath": DEPLOY_XPATH,
        "cloudEventData": {"targetData": json.dumps(DEPLOY_OBJ, separators=(",", ":"))},
    }
    assert set(remove["cloudEventData"]) == {"sourceData"}
    assert json.loads(remove["cloudEventData"]["sourceData"]) == CM_OBJ
    data = replace["cloudEventData"]
    assert json.loads(data["sourceData"]) == {
        "metadata": {"labels": {"tier": "front"}},
        "status": {"phase": "Pending"},
    }
    assert json.loads(data["targetData"]) == {"status": {"phase": "Running", "podIP": "10.0.0.7"}}
    assert len({e.event_id for e in events}) == 3


@pytest.mark.parametrize(
    ("first", "gone", "operation"),
    [
        (True, False, "CREATE"),
        (False, False, "UPDATE"),
        (False, True, "DELETE"),
        (True, True, "DELETE"),
    ],
)
def test_operation(first: bool, gone: bool, operation: str) -> None:
    assert delta_operation(first_delta=first, anchor_gone=gone) == operation


def test_operation_sequence_create_update_delete() -> None:
    """An anchor's life: first delta creates, a later one modifies, the last removes it all."""
    steps = [
        _delta([ResourceChange("created", POD, new=POD_V1)], first=True, notification_id="1"),
        _delta([ResourceChange("modified", POD, old=POD_V1, new=POD_V2)], notification_id="2"),
        _delta([ResourceChange("deleted", POD, old=POD_V2)], gone=True, notification_id="3"),
    ]
    events = [_events(step, "delta") for step in steps]
    assert [e.data["operation"] for (e,) in events] == ["CREATE", "UPDATE", "DELETE"]
    assert [e.data["data"][0]["action"] for (e,) in events] == ["ADD", "UPDATE", "DELETE"]
    assert [e.data["data"][0]["xpath"] for (e,) in events] == [POD_XPATH] * 3
    (created,), (modified,), (deleted,) = events
    assert created.data["data"][0]["payload"] == POD_V1
    assert apply_merge_patch(POD_V1, modified.data["data"][0]["payload"]) == POD_V2
    assert deleted.data["data"][0]["payload"] == POD_V2
    assert len({e.event_id for (e,) in events}) == 3


def test_cluster_scoped_and_quoted_names_validate() -> None:
    namespace = ResourceKey("east", "", "v1", "Namespace", "", "team-'a'")
    (event,) = _events(_delta([ResourceChange("created", namespace, new={"k": 1})]), "delta")
    assert event.data["data"][0]["xpath"] == (
        "/instance-status/resources[@cluster='east'"
        " and @apiVersion='v1' and @kind='Namespace' and @name='team-''a''']"
    )
    (cps_event,) = _events(_delta([ResourceChange("created", namespace, new={"k": 1})]), "cps")
    assert cps_event.data["eventPayload"]["xpath"] == event.data["data"][0]["xpath"]


@pytest.mark.parametrize("event_format", ["delta", "cps"])
def test_no_change_no_event(event_format: EventFormat) -> None:
    assert _events(_delta([]), event_format) == []
    same = ResourceChange("modified", POD, old=POD_V1, new=json.loads(json.dumps(POD_V1)))
    assert _events(_delta([same]), event_format) == []


def test_noop_modification_is_dropped_from_a_mixed_delta() -> None:
    same = ResourceChange("modified", POD, old=POD_V1, new=POD_V1)
    (event,) = _events(_delta([same, ResourceChange("created", DEPLOY, new=DEPLOY_OBJ)]), "delta")
    assert [c["xpath"] for c in event.data["data"]] == [DEPLOY_XPATH]


@pytest.mark.parametrize("event_format", ["delta", "cps"])
def test_unknown_old_object_maps_as_change_from_empty(event_format: EventFormat) -> None:
    (event,) = _events(_delta([ResourceChange("modified", POD, new=POD_V2)]), event_format)
    if event_format == "delta":
        assert event.data["data"][0]["payload"] == POD_V2
    else:
        assert event.data["eventPayload"]["cloudEventData"] == {
            "sourceData": "{}",
            "targetData": json.dumps(POD_V2, separators=(",", ":")),
        }


@pytest.mark.parametrize("event_format", ["delta", "cps"])
def test_same_input_gives_same_events(event_format: EventFormat) -> None:
    """Ids and bytes are deterministic, whatever order the engine hands changes over in."""
    first = [e.record() for e in _events(_delta(MIXED), event_format)]
    again = [e.record() for e in _events(_delta(list(reversed(MIXED))), event_format)]
    assert first == again
    other = [e.record() for e in _events(_delta(MIXED, notification_id="n-2"), event_format)]
    assert {dict(r.headers)["ce_id"] for r in first}.isdisjoint(
        {dict(r.headers)["ce_id"] for r in other}
    )


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (MOMENT, "2026-11-24T10:15:30.123+0000"),
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000+0000"),
        (
            datetime(2026, 1, 2, 1, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-01T23:00:00.999+0000",
        ),
    ],
)
def test_observed_timestamp_format(moment: datetime, text: str) -> None:
    assert observed_timestamp(moment) == text


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        observed_timestamp(datetime(2026, 1, 1))  # naive on purpose


EXPECTED_HEADERS: dict[EventFormat, dict[str, bytes]] = {
    "delta": {
        "ce_specversion": b"1.0",
        "ce_source": b"urn:cps:org.onap.cps",
        "ce_type": b"org.onap.cps.data-updated-delta-event",
        "ce_dataschema": b"urn:cps:org.onap.cps:data-updated-event-schema:v1",
        "ce_time": b"2026-11-24T10:15:30.123Z",
        "content-type": b"application/json",
    },
    "cps": {
        "ce_specversion": b"1.0",
        "ce_source": b"CPS",
        "ce_type": b"org.onap.cps.events.model.CpsDataUpdatedEvent",
        "ce_dataschema": b"urn:cps:org.onap.cps.events.model.CpsDataUpdatedEvent:1.0.0",
        "ce_time": b"2026-11-24T10:15:30.123Z",
        "content-type": b"application/json",
        "ce_correlationid": b"ds1:inst-1",
    },
}


@pytest.mark.parametrize("event_format", ["delta", "cps"])
def test_kafka_record_headers_and_round_trip(event_format: EventFormat) -> None:
    for event in _events(_delta(MIXED), event_format):
        record = event.record()
        assert record.key == b"ds1:inst-1"
        headers = dict(record.headers)
        assert len(headers) == len(record.headers), "no header twice"
        assert headers.pop("ce_id") == event.event_id.encode()
        assert headers == EXPECTED_HEADERS[event_format]
        assert json.loads(record.value) == event.data

        decoded = from_kafka(record.key, record.value, record.headers)
        assert decoded.get_id() == event.event_id
        assert decoded.get_specversion() == "1.0"
        assert decoded.get_source() == event.source
        assert decoded.get_type() == event.event_type
        assert decoded.get_dataschema() == event.dataschema
        assert decoded.get_datacontenttype() == "application/json"
        assert decoded.get_time() == MOMENT.replace(microsecond=123000)
        assert decoded.get_subject() is None
        if event_format == "cps":
            assert decoded.get_extension("correlationid") == "ds1:inst-1"
        assert decoded.get_data() == event.data


ENTRY = {
    "name": "web-0",
    "namespace": "ns",
    "cluster": "east",
    "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
    "status": POD_V2,
}


def test_changes_from_contract_entries() -> None:
    assert change_from_entry("created", ENTRY) == ResourceChange("created", POD, new=POD_V2)
    assert change_from_entry("deleted", ENTRY) == ResourceChange("deleted", POD, old=POD_V2)
    assert change_from_entry("modified", ENTRY, POD_V1) == ResourceChange(
        "modified", POD, old=POD_V1, new=POD_V2
    )
    cluster_scoped: dict[str, Any] = {**ENTRY, "GVK": {"Version": "v1", "Kind": "Namespace"}}
    del cluster_scoped["namespace"]
    assert change_from_entry("created", cluster_scoped).key == ResourceKey(
        "east", "", "v1", "Namespace", "", "web-0"
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "GVK": {"Version": "v1", "Kind": "Pod"}},
        {"name": "", "GVK": {"Version": "v1", "Kind": "Pod"}, "status": {}},
        {"name": "x", "GVK": {"Kind": "Pod"}, "status": {}},
        {"name": "x", "GVK": {"Version": "v1", "Kind": "Pod"}, "status": "text"},
        {"name": "x", "cluster": "", "GVK": {"Version": "v1", "Kind": "Pod"}, "status": {}},
    ],
)
def test_bad_entries_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        change_from_entry("created", entry)


@pytest.mark.parametrize(
    ("action", "old", "new"),
    [("created", {}, None), ("deleted", None, {}), ("modified", {}, None)],
)
def test_changes_missing_their_objects_are_refused(
    action: Any, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> None:
    with pytest.raises(ValueError, match="needs"):
        ResourceChange(action, POD, old=old, new=new)


def _net(
    created: list[dict[str, Any]] | None = None,
    deleted: list[dict[str, Any]] | None = None,
    modified: list[dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    return {"created": created or [], "deleted": deleted or [], "modified": modified or []}


def _entry(key: ResourceKey, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": key.name,
        "namespace": key.namespace,
        "cluster": key.cluster,
        "GVK": {"Group": key.group, "Version": key.version, "Kind": key.kind},
        "status": status,
    }


def test_anchor_view_drives_create_update_delete_and_old_objects() -> None:
    view = AnchorView()
    step = view.advance(_net(created=[_entry(POD, POD_V1), _entry(DEPLOY, DEPLOY_OBJ)]))
    assert (step.first_delta, step.anchor_gone) == (True, False)
    step = view.advance(_net(modified=[_entry(POD, POD_V2)]))
    assert (step.first_delta, step.anchor_gone) == (False, False)
    assert step.changes == [ResourceChange("modified", POD, old=POD_V1, new=POD_V2)]
    step = view.advance(_net(deleted=[_entry(POD, POD_V2)]))
    assert (step.first_delta, step.anchor_gone) == (False, False), "one resource remains"
    step = view.advance(_net(deleted=[_entry(DEPLOY, DEPLOY_OBJ)]))
    assert (step.first_delta, step.anchor_gone) == (False, True)
    assert view.objects == {}
    step = view.advance(_net(created=[_entry(POD, POD_V1)]))
    assert step.first_delta, "a reappearing anchor is created again"


def test_anchor_view_baseline_resources_have_no_old_object() -> None:
    """Subscribed after the resource existed: the first modification has no told object."""
    view = AnchorView()
    step = view.advance(_net(modified=[_entry(POD, POD_V2)]))
    assert step.changes == [ResourceChange("modified", POD, old=None, new=POD_V2)]
    assert step.first_delta
    step = view.advance(_net(modified=[_entry(POD, POD_V1)]))
    assert step.changes == [ResourceChange("modified", POD, old=POD_V2, new=POD_V1)]
    # Deleting a resource never told of, with nothing else known: the anchor is gone.
    other = AnchorView()
    step = other.advance(_net(deleted=[_entry(CM, CM_OBJ)]))
    assert (step.first_delta, step.anchor_gone) == (False, True)
    assert step.changes == [ResourceChange("deleted", CM, old=CM_OBJ)]


def test_anchor_view_skips_bad_entries_and_keeps_the_rest() -> None:
    view = AnchorView()
    step = view.advance(
        _net(created=[{"name": "x"}, _entry(POD, POD_V1)], modified=[{"GVK": "nope"}])
    )
    assert step.changes == [ResourceChange("created", POD, new=POD_V1)]
    assert len(step.rejected) == 2
    assert all("entry" in message for message in step.rejected)


def test_anchor_view_persists() -> None:
    view = AnchorView()
    view.advance(_net(created=[_entry(POD, POD_V1), _entry(CM, CM_OBJ)]))
    restored = AnchorView.from_json(json.loads(json.dumps(view.to_json())), "old")
    assert restored == view
    assert restored.advance(_net(modified=[_entry(POD, POD_V2)])).changes[0].old == POD_V1
