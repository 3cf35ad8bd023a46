"""The oracle must catch every kind of wrong history it claims to check (and pass a right one)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.reliability.oracle import (
    History,
    ObjectKey,
    Receipt,
    Verdict,
    check_subscription,
    compare_states,
    delivered_in_order,
    order_violations,
    reconstruct,
    sequence_violations,
    spurious_changes,
    throttle_violations,
)

pytestmark = [pytest.mark.reliability]


def cm(name: str, value: str, uid: str = "u1", rv: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv or value},
        "data": {"v": value},
    }


def entry(obj: dict[str, Any], cluster: str | None = "east") -> dict[str, Any]:
    found = {
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"]["namespace"],
        "GVK": {"Group": "", "Version": "v1", "Kind": obj["kind"]},
        "status": obj,
    }
    if cluster is not None:
        found["cluster"] = cluster
    return found


def receipt(
    webhook_id: str,
    at: float,
    created: tuple[dict[str, Any], ...] = (),
    modified: tuple[dict[str, Any], ...] = (),
    deleted: tuple[dict[str, Any], ...] = (),
    answered: int = 200,
    cluster: str | None = "east",
) -> Receipt:
    """A callback whose entries name ``cluster`` (None: entries without ``"cluster"``)."""
    body = {
        "instance-id": "i",
        "subscription-name": "s",
        "metadata": {},
        "resource-changes": {
            "created": [entry(o, cluster) for o in created],
            "modified": [entry(o, cluster) for o in modified],
            "deleted": [entry(o, cluster) for o in deleted],
        },
    }
    return Receipt(webhook_id, at, json.dumps(body).encode(), answered)


def key(name: str, cluster: str = "east") -> ObjectKey:
    return (cluster, "ConfigMap", "ns", name)


RIGHT = [
    receipt("w1", 0.0, created=(cm("a", "1"), cm("b", "1"))),
    receipt("w2", 2.0, modified=(cm("a", "2"),), deleted=(cm("b", "1"),)),
    receipt("w2", 2.5, modified=(cm("a", "2"),), deleted=(cm("b", "1"),)),  # a retry
    receipt("w3", 4.5, created=(cm("c", "1"),)),
]
TRUTH = {key("a"): cm("a", "2"), key("c"): cm("c", "1")}


def test_a_right_history_passes_and_counts_its_duplicate() -> None:
    verdict = check_subscription(RIGHT, {}, TRUTH, interval_s=2, fields=["data"])
    assert verdict.problems == []
    assert verdict.duplicates == 1
    assert verdict.notifications == 3


def test_a_baseline_object_needs_no_callback() -> None:
    baseline = {key("z"): cm("z", "0")}
    truth = {**TRUTH, key("z"): cm("z", "0")}
    assert check_subscription(RIGHT, baseline, truth, interval_s=0, fields=["data"]).ok


@pytest.mark.parametrize(
    ("history", "truth", "expected"),
    [
        # a lost creation
        (RIGHT[:3], TRUTH, "lost"),
        # a lost deletion
        (
            [RIGHT[0], receipt("w2", 2.0, modified=(cm("a", "2"),)), RIGHT[3]],
            TRUTH,
            "stale",
        ),
        # a lost last modification
        (RIGHT, {key("a"): cm("a", "3"), key("c"): cm("c", "1")}, "wrong"),
        # notifications applied out of order would leave the old value: receipt order counts
        (
            [*RIGHT[:2], receipt("w9", 3.0, modified=(cm("a", "1"),)), RIGHT[3]],
            TRUTH,
            "wrong",
        ),
        # a recreated object with a new uid told as unchanged
        (RIGHT, {key("a"): cm("a", "2", uid="u2"), key("c"): cm("c", "1")}, "uid"),
    ],
)
def test_state_losses_are_caught(
    history: list[Receipt], truth: dict[ObjectKey, Any], expected: str
) -> None:
    verdict = check_subscription(history, {}, truth, interval_s=0, fields=["data", "metadata.uid"])
    assert any(expected in p for p in verdict.problems), verdict.problems


def test_a_failed_attempt_does_not_count_as_told() -> None:
    history = [*RIGHT[:3], receipt("w3", 4.0, created=(cm("c", "1"),), answered=500)]
    verdict = check_subscription(history, {}, TRUTH, interval_s=0, fields=["data"])
    assert any("lost" in p for p in verdict.problems)


def test_the_same_id_with_another_body_is_caught() -> None:
    history = [*RIGHT, receipt("w3", 5.0, created=(cm("c", "2"),))]
    _, verdict = delivered_in_order(history)
    assert any("different bodies" in p for p in verdict.problems)


def test_callbacks_closer_than_the_interval_are_caught() -> None:
    assert throttle_violations(RIGHT, interval_s=2) == []
    # w1 → w2 only 2.0 s apart, and the next id counts from w2's retry (a POST too) at 2.5
    assert [p.split(" ")[1:4] for p in throttle_violations(RIGHT, interval_s=2.1)] == [
        ["w1", "then", "w2"],
        ["w2", "then", "w3"],
    ]
    # a retry of the same id is the retry rule's business, not a second callback
    assert throttle_violations(RIGHT[1:3], interval_s=10) == []
    # the slack is a few ms, not more
    close = [receipt("x", 0.0), receipt("y", 1.9)]
    assert throttle_violations(close, interval_s=2)
    assert throttle_violations([receipt("x", 0.0), receipt("y", 1.96)], interval_s=2) == []
    assert throttle_violations(close, interval_s=0) == []


def test_reconstruct_applies_deletes_before_sets_within_one_notification() -> None:
    # deleted-then-recreated inside one window is a modification; within one payload the
    # same key never appears twice, so the order inside a payload does not matter otherwise
    told = reconstruct({key("a"): cm("a", "1")}, [receipt("w", 0, deleted=(cm("a", "1"),))])
    assert told == {}


def test_compare_states_lists_each_difference() -> None:
    problems = compare_states(
        {key("a"): cm("a", "1"), key("b"): cm("b", "1")},
        {key("a"): cm("a", "2"), key("c"): cm("c", "1")},
        ["data"],
    )
    assert len(problems) == 3


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([("i", 1), ("i", 2), ("j", 1), ("i", 3)], []),
        ([("i", 1), ("i", 3)], ["gap"]),
        ([("i", 1), ("i", 2), ("i", 2)], ["repeat"]),
        ([("i", 2)], ["gap"]),
        ([("i", 1), ("i", 2), ("i", 1), ("i", 3)], ["repeat"]),
    ],
)
def test_sequence_gaps_and_repeats_are_caught(
    events: list[tuple[str, int]], expected: list[str]
) -> None:
    found = sequence_violations(events)
    assert [next(w for w in ("gap", "repeat") if w in p) for p in found] == expected


# -- two clusters: the same namespace/name in each are two objects (CONTRACT §10) ----------
# east and west both hold ConfigMaps "a" and "b" in namespace "ns" (other uids in west)
EAST_A1, EAST_A2, EAST_B = cm("a", "1", "ea"), cm("a", "2", "ea"), cm("b", "1", "eb")
WEST_A1, WEST_A3 = cm("a", "1", "wa", "11"), cm("a", "3", "wa", "13")
WEST_B = cm("b", "1", "wb", "11")
# east deleted its "b"; a pipeline mixing the clusters up tells west's "b" deleted too
WEST_B_GONE = receipt("v2", 2.5, modified=(WEST_A3,), deleted=(WEST_B,), cluster="west")


def _two_cluster_history() -> History:
    history = History()
    made = {"east": (EAST_A1, EAST_A2, EAST_B), "west": (WEST_A1, WEST_A3, WEST_B)}
    for cluster, objects in made.items():
        for obj in objects:
            history.saw(key(obj["metadata"]["name"], cluster), obj)
    history.saw_deleted(key("b", "east"), EAST_B)  # only east's b was deleted
    return history


TWO_TRUTH = {key("a"): EAST_A2, key("a", "west"): WEST_A3, key("b", "west"): WEST_B}
TWO_RIGHT = [
    receipt("w1", 0.0, created=(EAST_A1, EAST_B)),
    receipt("v1", 0.5, created=(WEST_A1, WEST_B), cluster="west"),
    receipt("w2", 2.0, modified=(EAST_A2,), deleted=(EAST_B,)),
    receipt("v2", 2.5, modified=(WEST_A3,), cluster="west"),
]


def test_a_right_two_cluster_history_passes() -> None:
    verdict = check_subscription(
        TWO_RIGHT,
        {},
        TWO_TRUTH,
        interval_s=0,
        fields=["data", "metadata.uid"],
        history=_two_cluster_history(),
    )
    assert verdict.problems == []


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # west's change of "a" told under east's name: east's a told wrong, west's a stale
        (
            [*TWO_RIGHT[:3], receipt("v2", 2.5, modified=(WEST_A3,), cluster="east")],
            ["wrong: ('east'", "wrong: ('west'", "spurious: v2 told ('east'"],
        ),
        # east's deletion of "b" applied to west's "b" too (a relist of east "syncing" west)
        (
            [*TWO_RIGHT[:3], WEST_B_GONE],
            ["lost: ('west', 'ConfigMap', 'ns', 'b')", "spurious: v2 told ('west'"],
        ),
        # ... and even when a later callback re-creates it, the state is right but the
        # deletion was spurious
        (
            [
                *TWO_RIGHT[:3],
                WEST_B_GONE,
                receipt("v3", 3.0, created=(WEST_B,), cluster="west"),
            ],
            ["spurious: v2 told ('west', 'ConfigMap', 'ns', 'b') deleted"],
        ),
        # the two clusters' objects merged into one (entries without a cluster)
        (
            [
                receipt("w1", 0.0, created=(EAST_A1, EAST_B), cluster=None),
                receipt("v1", 0.5, created=(WEST_A1, WEST_B), cluster=None),
                receipt("w2", 2.0, modified=(EAST_A2,), deleted=(EAST_B,), cluster=None),
                receipt("v2", 2.5, modified=(WEST_A3,), cluster=None),
            ],
            ["lost: ('east'", "lost: ('west'", "stale: ('', 'ConfigMap'", "spurious: w1"],
        ),
    ],
)
def test_two_clusters_mixed_up_are_caught(history: list[Receipt], expected: list[str]) -> None:
    verdict = check_subscription(
        history,
        {},
        TWO_TRUTH,
        interval_s=0,
        fields=["data", "metadata.uid"],
        history=_two_cluster_history(),
    )
    for found in expected:
        assert any(found in p for p in verdict.problems), (found, verdict.problems)


def test_a_version_that_never_existed_is_spurious() -> None:
    made_up = cm("a", "9", "ea")  # east's a, but data/resourceVersion it never had
    found = spurious_changes([receipt("w9", 0.0, modified=(made_up,))], _two_cluster_history())
    assert len(found) == 1
    assert "never had" in found[0]
    assert spurious_changes(TWO_RIGHT, _two_cluster_history()) == []


def test_a_terminating_version_before_a_deletion_is_not_spurious() -> None:
    # a Pod DELETE stores the object with deletionTimestamp first (its own resourceVersion,
    # unseen by the deleter), then removes it; the watcher may report that as a modification
    history = _two_cluster_history()
    terminating = cm("b", "1", "eb", "5")
    terminating["metadata"]["deletionTimestamp"] = "2026-12-07T02:02:10Z"
    told = [receipt("w9", 0.0, modified=(terminating,))]
    assert spurious_changes(told, history) == []
    # ... but not for an object never deleted, nor one older than a version seen
    alive = cm("a", "9", "ea", "9")
    alive["metadata"]["deletionTimestamp"] = "2026-12-07T02:02:10Z"
    assert spurious_changes([receipt("w9", 0.0, modified=(alive,))], history)
    history.saw(key("b"), cm("b", "2", "eb", "7"))
    assert spurious_changes(told, history)


def test_the_report_counts_losses_apart_from_other_problems() -> None:
    from tests.reliability.pipeline_run import Report

    problems = ["rel0.s: lost: a", "rel0.s: stale: b", "rel0.s: wrong: c", "throttle: x then y"]
    problems += ["rel0.s: spurious: w1 told d deleted"]
    report = Report("x", 1, verdict=Verdict(problems=[*problems, "sequence gap: i"]))
    assert report.losses == 3
    assert report.spurious == 1
    assert Report("y", 1).losses == 0
    assert Report("y", 1).spurious == 0


def test_an_object_told_going_back_or_told_twice_is_caught() -> None:
    delivered, _ = delivered_in_order(RIGHT)
    assert order_violations(delivered) == []  # deleted at the version last told is fine
    # a deposed leader's record applied after its successor's: the state ends right (a
    # later callback repairs it), but the subscriber saw "a" go back from 2 to 1
    stale = [
        *RIGHT[:2],
        receipt("w9", 3.0, modified=(cm("a", "1"),)),
        receipt("wa", 4.0, modified=(cm("a", "2", rv="3"),)),
    ]
    delivered, _ = delivered_in_order(stale)
    assert [p.split(":")[0] for p in order_violations(delivered)] == ["went back"]
    truth = {key("a"): cm("a", "2", rv="3")}
    assert not check_subscription(stale, {}, truth, interval_s=0, fields=["data"]).ok
    # the same version told again under another webhook-id: a duplicate not deduped
    twice = [*RIGHT[:2], receipt("w9", 3.0, modified=(cm("a", "2"),))]
    delivered, _ = delivered_in_order(twice)
    assert [p.split(":")[0] for p in order_violations(delivered)] == ["told again"]
    # a re-created object (new uid) is newer than its predecessor's deletion
    again = [*RIGHT[:2], receipt("w9", 3.0, created=(cm("b", "1", uid="u2", rv="4"),))]
    delivered, _ = delivered_in_order(again)
    assert order_violations(delivered) == []
