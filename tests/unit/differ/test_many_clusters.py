"""Many clusters on one partition (CONTRACT §10): lists never interfere, deltas name their
cluster, and a changelog of the release before clusters restores without a spurious change."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from deltawatch.resource_identity import EventType, ResourceKey
from services.differ.changelog_codec import SnapshotBuilder, encode_outcome, encode_snapshot
from services.differ.resource_diff import BatchOutcome, apply_batch
from services.differ.resource_event import ResourceEvent
from services.differ.snapshot import ListScope, PartitionSnapshot

T0 = datetime(2026, 12, 1, tzinfo=UTC)
_clock = count(1)
LEGACY_CHANGELOG = (
    Path(__file__).resolve().parents[2] / "fixtures/legacy/differ-changelog-before-clusters.jsonl"
)


def cm(name: str, value: str = "1", instance: str = "i1") -> dict[str, Any]:
    meta = {
        "name": name,
        "namespace": "ns",
        "uid": f"uid-{name}",
        "labels": {"k8splugin.io/rb-instance-id": instance},
    }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


def ev(
    cluster: str,
    kind: str,
    name: str | None = None,
    body: dict[str, Any] | None = None,
    *,
    list_id: str | None = None,
    instance: str = "i1",
) -> ResourceEvent:
    event_type = EventType(kind)
    marker = event_type in (EventType.LIST_BEGIN, EventType.LIST_END)
    if body is None and name is not None and event_type is not EventType.DELETED:
        body = cm(name, instance=instance)
    return ResourceEvent(
        type=event_type,
        cluster=cluster,
        instance_id=None if marker else instance,
        group="",
        version="v1",
        kind="ConfigMap",
        namespace="" if marker else "ns",
        name=name,
        uid=None if body is None else body["metadata"]["uid"],
        observed_at=T0 + timedelta(seconds=next(_clock)),
        list_id=list_id,
        object=body,
    )


def run(snapshot: PartitionSnapshot, events: Iterable[ResourceEvent]) -> BatchOutcome:
    outcome = apply_batch(snapshot, list(events))
    outcome.commit_to(snapshot)
    return outcome


def keys(snapshot: PartitionSnapshot, instance: str = "i1") -> set[tuple[str, str]]:
    found = snapshot.instance(instance)
    return {(k.cluster, k.name) for k in found.resources} if found else set()


def changes(outcome: BatchOutcome) -> list[tuple[str, int, str, list[str]]]:
    """(cluster, sequence, change, names) of every non-empty list of every delta."""
    return [
        (delta.cluster, delta.sequence, change, [r.key.name for r in resources])
        for delta in outcome.deltas
        for change, resources in (
            ("created", delta.created),
            ("deleted", delta.deleted),
            ("modified", delta.modified),
        )
        if resources
    ]


def a_list(cluster: str, list_id: str, names: list[str]) -> list[ResourceEvent]:
    return [
        ev(cluster, "LIST_BEGIN", list_id=list_id),
        *(ev(cluster, "LISTED", n, list_id=list_id) for n in names),
        ev(cluster, "LIST_END", list_id=list_id),
    ]


def test_the_same_name_in_two_clusters_gives_one_delta_per_cluster() -> None:
    snapshot = PartitionSnapshot()
    outcome = run(snapshot, [ev("west", "ADDED", "a"), ev("east", "ADDED", "a")])
    assert changes(outcome) == [("east", 1, "created", ["a"]), ("west", 2, "created", ["a"])]
    assert [r.key for r in outcome.deltas[0].created] == [
        ResourceKey("east", "", "v1", "ConfigMap", "ns", "a")
    ]
    outcome = run(snapshot, [ev("west", "DELETED", "a")])
    assert changes(outcome) == [("west", 3, "deleted", ["a"])]
    assert keys(snapshot) == {("east", "a")}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_interleaved_initial_lists_never_delete_the_other_clusters_objects(
    data: st.DataObject,
) -> None:
    east = a_list("east", "E1", ["a", "b"])
    west = a_list("west", "W1", ["a", "c"])
    order = data.draw(st.permutations([0] * len(east) + [1] * len(west)))
    streams = [iter(east), iter(west)]
    events = [next(streams[i]) for i in order]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(events) - 1), max_size=4)))
    snapshot = PartitionSnapshot()
    reported: list[tuple[str, int, str, list[str]]] = []
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        reported += changes(run(snapshot, events[start:end]))
    assert all(change == "created" for _cluster, _seq, change, _names in reported)
    assert keys(snapshot) == {("east", "a"), ("east", "b"), ("west", "a"), ("west", "c")}
    assert [seq for _c, seq, _change, _n in reported] == list(range(1, len(reported) + 1))
    assert snapshot.open_lists == {}


def test_a_relist_inside_another_clusters_list_deletes_only_its_own_vanished_objects() -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, [*a_list("east", "E1", ["a", "b"]), *a_list("west", "W1", ["x", "y"])])
    run(snapshot, [ev("west", "LIST_BEGIN", list_id="W2"), ev("west", "LISTED", "x", list_id="W2")])
    outcome = run(snapshot, a_list("east", "E2", ["a"]))  # b went while east's watcher was down
    assert changes(outcome) == [("east", 3, "deleted", ["b"])]
    outcome = run(snapshot, [ev("west", "LISTED", "y", list_id="W2")])
    outcome = run(snapshot, [ev("west", "LIST_END", list_id="W2")])
    assert changes(outcome) == []
    assert keys(snapshot) == {("east", "a"), ("west", "x"), ("west", "y")}


def test_a_list_that_never_ends_blocks_no_other_cluster() -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, [ev("west", "LIST_BEGIN", list_id="W1"), ev("west", "LISTED", "x", list_id="W1")])
    # west's watcher died mid-list; east goes on, and so do west's own watch events.
    outcome = run(snapshot, [ev("east", "ADDED", "a"), ev("west", "ADDED", "y")])
    assert changes(outcome) == [("east", 2, "created", ["a"]), ("west", 3, "created", ["y"])]
    outcome = run(snapshot, a_list("east", "E1", []))
    assert changes(outcome) == [("east", 4, "deleted", ["a"])]
    assert keys(snapshot) == {("west", "x"), ("west", "y")}
    assert list(snapshot.open_lists) == [ListScope("west", "", "v1", "ConfigMap", "")]


# --- upgrade from the release before clusters ----------------------------------------------


def legacy_records() -> list[tuple[bytes, bytes | None]]:
    lines = LEGACY_CHANGELOG.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return [
        (r["key"].encode(), None if r["value"] is None else r["value"].encode()) for r in records
    ]


def restore(records: Iterable[tuple[bytes, bytes | None]]) -> PartitionSnapshot:
    builder = SnapshotBuilder("default")
    for key, value in records:
        builder.apply(key, value)
    return builder.snapshot


def compacted(records: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """What compaction leaves once tombstones expire: the last live record of every key."""
    last = {key: (offset, value) for offset, (key, value) in enumerate(records)}
    kept = sorted((offset, key, value) for key, (offset, value) in last.items())
    return [(key, value) for _offset, key, value in kept if value is not None]


def test_a_changelog_of_the_release_before_clusters_restores_as_the_differs_cluster() -> None:
    snapshot = restore(legacy_records())
    assert keys(snapshot) == {("default", "cm-a"), ("default", "cm-b")}
    assert keys(snapshot, "i2") == {("default", "cm-c")}
    assert [i.sequence for i in snapshot.instances.values()] == [2, 1]
    assert snapshot.open_lists == {ListScope("default", "", "v1", "ConfigMap", ""): "L-open"}


def test_the_upgraded_differ_reports_nothing_spurious_and_retires_the_old_records() -> None:
    records = legacy_records()
    snapshot = restore(records)
    told = {(i, k.name): snapshot.bodies.body((i, k)) for i, k, _e in snapshot.items()}
    # The watcher of the upgraded pipeline relists the same objects: no change to report.
    relist = [
        ev("default", "LIST_BEGIN", list_id="L2"),
        *(
            ev("default", "LISTED", name, json.loads(status), list_id="L2", instance=instance)
            for (instance, name), status in told.items()
        ),
        ev("default", "LIST_END", list_id="L2"),
    ]
    outcome = run(snapshot, relist)
    assert outcome.deltas == []
    assert {n.instance_id for n in outcome.synced} == {"i1", "i2"}
    written = encode_outcome(outcome)
    retired = [key for key, value in written[:4] if value is None]
    assert sorted(retired) == [
        b'["l","","v1","ConfigMap",""]',
        b'["r","i1","","v1","ConfigMap","ns","cm-a"]',
        b'["r","i1","","v1","ConfigMap","ns","cm-b"]',
        b'["r","i2","","v1","ConfigMap","ns","cm-c"]',
    ], "each old record is deleted, before its new record, the first time it is rewritten"
    records += written
    # A real change after the upgrade is reported once, as this cluster's.
    outcome = run(snapshot, [ev("default", "MODIFIED", "cm-b", cm("cm-b", "9"))])
    assert changes(outcome) == [("default", 3, "modified", ["cm-b"])]
    records += encode_outcome(outcome)
    assert restore(records) == snapshot
    assert restore(compacted(records)) == snapshot, "compaction never brings old state back"
    assert snapshot.legacy_resources == set()
    assert snapshot.legacy_lists == set()


def test_a_snapshot_written_now_restores_without_legacy_marks() -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, [ev("east", "ADDED", "a"), ev("east", "LIST_BEGIN", list_id="E1")])
    restored = restore(encode_snapshot(snapshot))
    assert restored == snapshot
    assert restored.legacy_resources == set()
