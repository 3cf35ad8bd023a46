"""CPS delta events from the running notifier: subscribe rules, actions, formats, throttling.

Real broker, the notifier as a subprocess, deltas produced in the CONTRACT §5 shape; the CPS
topic read ``read_committed``; every event's data validated against its JSON Schema.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deltawatch.resource_identity import ResourceKey
from deltawatch.settings import CommonSettings
from services.notifier.cps.xpath import resource_xpath
from tests.notifier.conftest import Commands, Deltas, NotifierProcess
from tests.notifier.cps.conftest import CpsRecord, of_anchor, read_cps, wait_cps

pytestmark = pytest.mark.kafka


def obj(name: str, **status: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "ns"}, "status": status}


def entry(name: str, **status: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": obj(name, **status),
    }


def xpath(name: str) -> str:
    return resource_xpath(ResourceKey("east", "", "v1", "Pod", "ns", name))


def subscribe(commands: Commands, dataspace: str, anchors: list[str] | None) -> None:
    command: dict[str, Any] = {"action": "subscribe-delta-notification", "dataspace": dataspace}
    if anchors is not None:
        command["anchors"] = anchors
    result = commands.send(command)
    assert result["status"] == "accepted", result


def unsubscribe(commands: Commands, dataspace: str, anchors: list[str]) -> None:
    result = commands.send(
        {"action": "unsubscribe-delta-notification", "dataspace": dataspace, "anchors": anchors}
    )
    assert result["status"] == "accepted", result


def count(n: int, anchor: str) -> Any:
    return lambda records: len(of_anchor(records, anchor)) >= n


def test_subscribed_anchor_gets_create_update_delete_and_others_nothing(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, settings: CommonSettings
) -> None:
    notifier.start()
    subscribe(commands, "ds1", ["inst-1"])
    # A change observed before the subscription is never told (the baseline), and an anchor
    # nobody subscribes hears nothing. The old change is sent after the subscription is
    # accepted: sent before, it could be consumed ahead of the command and count as
    # "no-subscriber" instead of "filtered".
    deltas.send("inst-1", created=[entry("old")], at=datetime.now(UTC) - timedelta(minutes=1))
    deltas.send("inst-2", created=[entry("x", phase="Running")])
    deltas.send("inst-1", created=[entry("a", phase="Pending", spec={"n": 1, "gone": True})])
    notifier.wait_metric(
        'deltawatch_notifier_deltas_total{outcome="no-subscriber"} 1.0',
        'deltawatch_notifier_deltas_total{outcome="filtered"} 1.0',
    )
    wait_cps(settings, count(1, ["ds1", "inst-1"][1]))
    deltas.send("inst-1", created=[entry("b")])
    wait_cps(settings, count(2, "inst-1"))
    deltas.send("inst-1", modified=[entry("a", phase="Running", spec={"n": 1, "ready": {"x": 2}})])
    wait_cps(settings, count(3, "inst-1"))
    deltas.send("inst-1", deleted=[entry("b")])
    wait_cps(settings, count(4, "inst-1"))
    deltas.send("inst-1", deleted=[entry("a", phase="Running")])
    records = wait_cps(settings, count(5, "inst-1"))

    assert of_anchor(records, "inst-2") == []
    events = of_anchor(records, "inst-1")
    assert len(events) == 5
    for event in events:
        assert event.key == "ds1:inst-1"
        assert event.headers["ce_type"] == "org.onap.cps.data-updated-delta-event"
        assert event.headers["ce_source"] == "urn:cps:org.onap.cps"
        assert event.headers["content-type"] == "application/json"
        assert event.data["dataspaceName"] == "ds1"
        assert event.data["schemaSetName"] == "k8s-instance-status"
        assert event.data["xpath"] == "/instance-status"
    assert [e.data["operation"] for e in events] == [
        "CREATE",
        "UPDATE",
        "UPDATE",
        "UPDATE",
        "DELETE",
    ]
    changes = [e.data["data"] for e in events]
    assert changes[0] == [
        {
            "action": "ADD",
            "xpath": xpath("a"),
            "payload": obj("a", phase="Pending", spec={"n": 1, "gone": True}),
        }
    ]
    assert changes[1] == [{"action": "ADD", "xpath": xpath("b"), "payload": obj("b")}]
    # UPDATE: RFC 7386 merge patch from what ds1 was told to the new object.
    assert changes[2] == [
        {
            "action": "UPDATE",
            "xpath": xpath("a"),
            "payload": {"status": {"phase": "Running", "spec": {"gone": None, "ready": {"x": 2}}}},
        }
    ]
    assert changes[3] == [{"action": "DELETE", "xpath": xpath("b"), "payload": obj("b")}]
    assert changes[4] == [
        {"action": "DELETE", "xpath": xpath("a"), "payload": obj("a", phase="Running")}
    ]
    assert len({e.id for e in events}) == 5
    assert "old" not in str(changes)
    notifier.wait_metric('deltawatch_notifier_cps_events_total{format="delta"} 5.0')


def test_all_anchors_include_later_instances_and_a_subset_can_leave(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, settings: CommonSettings
) -> None:
    notifier.start()
    subscribe(commands, "ds2", None)
    deltas.send("late-1", created=[entry("p")])
    wait_cps(settings, count(1, "late-1"))
    unsubscribe(commands, "ds2", ["late-2"])
    deltas.send("late-2", created=[entry("q")])
    notifier.wait_metric('deltawatch_notifier_deltas_total{outcome="no-subscriber"} 1.0')
    deltas.send("late-3", created=[entry("r")])
    wait_cps(settings, count(1, "late-3"))
    # Back in: a fresh start for ds2 (CREATE), with only what happened after.
    subscribe(commands, "ds2", ["late-2"])
    deltas.send("late-2", modified=[entry("q", phase="Failed")])
    records = wait_cps(settings, count(1, "late-2"))
    [back] = of_anchor(records, "late-2")
    assert back.data["operation"] == "CREATE"
    # Never told of q before: its first UPDATE carries the whole object (CONTRACT §7 note).
    assert back.data["data"] == [
        {"action": "UPDATE", "xpath": xpath("q"), "payload": obj("q", phase="Failed")}
    ]
    assert {r.key for r in records} == {"ds2:late-1", "ds2:late-2", "ds2:late-3"}
    assert all(r.data["operation"] == "CREATE" for r in records)


def test_cps_format_one_event_per_resource(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, settings: CommonSettings
) -> None:
    notifier.start(DELTAWATCH_CPS_EVENT_FORMAT="cps", DELTAWATCH_CPS_SCHEMA_SET="my-set")
    subscribe(commands, "ds1", ["inst-1"])
    deltas.send("inst-1", created=[entry("a", phase="Pending"), entry("b")])
    wait_cps(settings, count(2, "inst-1"))
    deltas.send("inst-1", modified=[entry("a", phase="Running")], deleted=[entry("b")])
    records = of_anchor(wait_cps(settings, count(4, "inst-1")), "inst-1")
    payloads = [r.data["eventPayload"] for r in records]
    assert [(p["action"], p["xpath"]) for p in payloads] == [
        ("create", xpath("a")),
        ("create", xpath("b")),
        ("remove", xpath("b")),
        ("replace", xpath("a")),
    ]
    assert all(p["schemaSetName"] == "my-set" and p["dataspaceName"] == "ds1" for p in payloads)
    data = [p["cloudEventData"] for p in payloads]
    assert data[0] == {"targetData": _json(obj("a", phase="Pending"))}
    assert data[2] == {"sourceData": _json(obj("b"))}
    assert data[3] == {
        "sourceData": _json({"status": {"phase": "Pending"}}),
        "targetData": _json({"status": {"phase": "Running"}}),
    }
    for record in records:
        assert record.headers["ce_type"] == "org.onap.cps.events.model.CpsDataUpdatedEvent"
        assert record.headers["ce_source"] == "CPS"
        assert record.headers["ce_correlationid"] == "ds1:inst-1"
    assert len({r.id for r in records}) == 4


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_throttled_lane_sends_the_net_change_after_the_interval(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, settings: CommonSettings
) -> None:
    interval = 2
    notifier.start(DELTAWATCH_CPS_MIN_NOTIFY_INTERVAL=str(interval))
    subscribe(commands, "ds1", ["inst-1"])
    deltas.send("inst-1", created=[entry("a", phase="Pending")])
    [first] = wait_cps(settings, count(1, "inst-1"))  # leading edge: at once
    deltas.send("inst-1", modified=[entry("a", phase="Starting")])
    deltas.send("inst-1", modified=[entry("a", phase="Running")])
    deltas.send("inst-1", created=[entry("b")], deleted=[])
    deltas.send("inst-1", created=[entry("c")])
    deltas.send("inst-1", deleted=[entry("c")])  # created and deleted inside the window: nothing
    records = wait_cps(settings, count(2, "inst-1"), timeout_s=interval + 20)
    second = of_anchor(records, "inst-1")[1]
    assert second.timestamp_ms - first.timestamp_ms >= interval * 1000
    assert second.data["operation"] == "UPDATE"
    assert second.data["data"] == [
        {"action": "ADD", "xpath": xpath("b"), "payload": obj("b")},
        {"action": "UPDATE", "xpath": xpath("a"), "payload": {"status": {"phase": "Running"}}},
    ]
    deltas.send("inst-1", deleted=[entry("b")])
    records = of_anchor(wait_cps(settings, count(3, "inst-1"), timeout_s=interval + 20), "inst-1")
    assert records[2].timestamp_ms - second.timestamp_ms >= interval * 1000
    assert len(read_cps(settings)) == 3


def _ids(records: list[CpsRecord]) -> list[str]:
    return [r.id for r in records]
