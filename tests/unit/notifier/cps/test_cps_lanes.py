"""Routing deltas to CPS lanes: baselines, unsubscribe, re-subscribe, partitions (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from services.notifier.coalescing_queue import CoalescingQueue
from services.notifier.cps.lanes import CpsLane, CpsLanes, is_lane_target, lane_target
from services.notifier.cps.subscriptions import DataspaceSubscription
from services.notifier.net_delta import ResourceChanges


def _pod(name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {"kind": "Pod", "metadata": {"name": name}, "status": {"phase": phase}},
    }


def _created(name: str) -> ResourceChanges:
    return ResourceChanges(created=(_pod(name),))


def _listed(dataspace: str, since: dict[str, int]) -> DataspaceSubscription:
    return DataspaceSubscription(dataspace, anchors=frozenset(since), since_ms=since)


def _all(dataspace: str, since_ms: int, excluded: frozenset[str] = frozenset()) -> Any:
    return DataspaceSubscription(
        dataspace, all_anchors=True, all_since_ms=since_ms, excluded=excluded
    )


def test_lane_targets_name_the_pair_without_ambiguity() -> None:
    assert lane_target("ds:a", "b") != lane_target("ds", "a:b")
    assert is_lane_target(lane_target("ds1", "inst-1"))
    assert not is_lane_target("inst-1/sub-1")
    assert not is_lane_target("cps/ds1")


@pytest.mark.parametrize(
    ("states", "observed_at", "fed", "subscribed"),
    [
        pytest.param({}, 5.0, [], False, id="no dataspace"),
        pytest.param({"ds1": _listed("ds1", {"other": 0})}, 5.0, [], False, id="not listed"),
        pytest.param({"ds1": _listed("ds1", {"inst": 5000})}, 5.0, ["ds1"], True, id="at baseline"),
        pytest.param(
            {"ds1": _listed("ds1", {"inst": 5001})}, 5.0, [], True, id="before the baseline"
        ),
        pytest.param({"ds1": _all("ds1", 1000)}, 5.0, ["ds1"], True, id="all anchors"),
        pytest.param(
            {"ds1": _all("ds1", 1000, frozenset({"inst"}))}, 5.0, [], False, id="excluded"
        ),
        pytest.param(
            {"ds1": _all("ds1", 1000), "ds2": _listed("ds2", {"inst": 9000})},
            5.0,
            ["ds1"],
            True,
            id="two dataspaces, one baseline later",
        ),
        pytest.param(
            {"ds2": _all("ds2", 1000), "ds1": _listed("ds1", {"inst": 0})},
            5.0,
            ["ds1", "ds2"],
            True,
            id="two dataspaces",
        ),
    ],
)
def test_route(
    states: dict[str, DataspaceSubscription], observed_at: float, fed: list[str], subscribed: bool
) -> None:
    queue = CoalescingQueue()
    lanes = CpsLanes(queue, 0.0)
    routed = lanes.route("inst", 2, _created("a"), observed_at, states)
    assert routed.fed == [lane_target(ds, "inst") for ds in fed]
    assert routed.subscribed is subscribed
    assert routed.dropped == []
    assert sorted(lanes.lanes) == routed.fed
    assert all(lane.partition == 2 for lane in lanes.lanes.values())
    assert [o.target for o in sorted(queue.take_due(10.0), key=lambda o: o.target)] == routed.fed


def test_unsubscribed_lane_is_dropped_with_its_pending_change() -> None:
    queue = CoalescingQueue()
    lanes = CpsLanes(queue, 60.0)
    states = {"ds1": _listed("ds1", {"inst": 0})}
    target = lane_target("ds1", "inst")
    lanes.route("inst", 0, _created("a"), 1.0, states)
    [first] = queue.take_due(1.0)
    queue.attempted(target, 1.0)
    queue.finished(target)
    lanes.route("inst", 0, _created("b"), 2.0, states)  # held by the 60 s window
    assert lanes.still_wanted(target, states)
    assert not lanes.still_wanted(target, {})
    routed = lanes.route("inst", 0, _created("c"), 3.0, {})
    assert routed.dropped == [target]
    assert target not in lanes.lanes
    assert target not in queue
    assert queue.take_due(100.0) == []
    assert first.number == 1


def test_resubscribed_anchor_starts_a_fresh_lane() -> None:
    queue = CoalescingQueue()
    lanes = CpsLanes(queue, 0.0)
    target = lane_target("ds1", "inst")
    lanes.route("inst", 0, _created("a"), 1.0, {"ds1": _listed("ds1", {"inst": 0})})
    [first] = queue.take_due(1.0)
    queue.finished(target)
    old = lanes.lanes[target]
    old.view.advance(first.changes.to_json())
    again = {"ds1": _listed("ds1", {"inst": 2000})}
    assert not lanes.still_wanted(target, again)
    routed = lanes.route("inst", 0, _created("b"), 3.0, again)
    assert routed.fed == [target]
    assert routed.dropped == []
    lane = lanes.lanes[target]
    assert lane is not old
    assert lane.since_ms == 2000
    assert not lane.view.objects
    [second] = queue.take_due(3.0)
    assert second.number == 1
    assert lane.notification_id(second.number) != old.notification_id(first.number)


def test_a_change_before_a_new_baseline_drops_the_old_lane() -> None:
    queue = CoalescingQueue()
    lanes = CpsLanes(queue, 0.0)
    lanes.route("inst", 0, _created("a"), 1.0, {"ds1": _listed("ds1", {"inst": 0})})
    routed = lanes.route("inst", 0, _created("b"), 1.5, {"ds1": _listed("ds1", {"inst": 2000})})
    assert routed.fed == []
    assert routed.dropped == [lane_target("ds1", "inst")]
    assert not lanes.lanes


def test_revoked_partitions_forget_their_lanes_and_restore_brings_them_back() -> None:
    queue = CoalescingQueue()
    lanes = CpsLanes(queue, 5.0)
    states = {"ds1": _all("ds1", 0)}
    lanes.route("a", 0, _created("x"), 1.0, states)
    lanes.route("b", 1, _created("y"), 1.0, states)
    snapshot = queue.snapshot(lane_target("ds1", "b"))
    lanes.drop_partitions({1})
    assert sorted(lanes.lanes) == [lane_target("ds1", "a")]
    lanes.restore(CpsLane("ds1", "b", 0, 1), snapshot)
    assert sorted(lanes.lanes) == [lane_target("ds1", "a"), lane_target("ds1", "b")]
    due = {o.target: o for o in queue.take_due(1.0)}
    assert due[lane_target("ds1", "b")].changes == _created("y")
