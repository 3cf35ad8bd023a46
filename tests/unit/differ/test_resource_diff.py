"""The pure diff: a table of event sequences and the net delta each must give."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deltawatch.resource_identity import EventType, ResourceKey
from services.differ.changelog_codec import SnapshotBuilder, encode_outcome, encode_snapshot
from services.differ.resource_diff import BatchOutcome, apply_batch
from services.differ.resource_event import ResourceEvent
from services.differ.snapshot import PartitionSnapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def obj(name: str, *, uid: str = "", rv: str = "1", phase: str = "Running", **extra: Any) -> Any:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": uid or f"uid-{name}",
        "resourceVersion": rv,
        "labels": {"k8splugin.io/rb-instance-id": "i1"},
    }
    meta.update(extra.pop("meta", {}))
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
    body["status"] = {"phase": phase, **extra.pop("status", {})}
    body.update(extra)
    return body


_clock = iter(range(1, 1_000_000))


def ev(
    kind: str,
    name: str | None = None,
    body: dict[str, Any] | None = None,
    *,
    instance: str | None = "i1",
    list_id: str | None = None,
    k8s_kind: str = "Pod",
    namespace: str = "ns",
) -> ResourceEvent:
    event_type = EventType(kind)
    if event_type in (EventType.LIST_BEGIN, EventType.LIST_END):
        instance, name, namespace = None, None, ""
    elif body is None and event_type is not EventType.DELETED:
        body = obj(name or "x")
    return ResourceEvent(
        type=event_type,
        cluster="c1",
        instance_id=instance,
        group="",
        version="v1",
        kind=k8s_kind,
        namespace=namespace,
        name=name,
        uid=(body or {}).get("metadata", {}).get("uid"),
        observed_at=T0 + timedelta(seconds=next(_clock)),
        list_id=list_id,
        object=body,
    )


def names(outcome: BatchOutcome, instance: str = "i1") -> dict[str, list[str]]:
    for delta in outcome.deltas:
        if delta.instance_id == instance:
            return {
                "created": [r.key.name for r in delta.created],
                "deleted": [r.key.name for r in delta.deleted],
                "modified": [r.key.name for r in delta.modified],
            }
    return {"created": [], "deleted": [], "modified": []}


def run(snapshot: PartitionSnapshot, events: list[ResourceEvent]) -> BatchOutcome:
    outcome = apply_batch(snapshot, events)
    outcome.commit_to(snapshot)
    return outcome


@dataclass
class Case:
    id: str
    setup: list[ResourceEvent]
    batch: list[ResourceEvent]
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)


CASES = [
    Case("first-seen instance: all created", [], [ev("ADDED", "a"), ev("ADDED", "b")], ["a", "b"]),
    Case(
        "resourceVersion only: no change",
        [ev("ADDED", "a")],
        [ev("MODIFIED", "a", obj("a", rv="2"))],
    ),
    Case(
        "generation, managedFields, observedGeneration only: no change",
        [ev("ADDED", "a")],
        [
            ev(
                "MODIFIED",
                "a",
                obj(
                    "a",
                    rv="9",
                    meta={"generation": 7, "managedFields": [{"manager": "kubectl"}]},
                    status={"observedGeneration": 7},
                ),
            )
        ],
    ),
    Case(
        "status change: modified",
        [ev("ADDED", "a")],
        [ev("MODIFIED", "a", obj("a", phase="X"))],
        modified=["a"],
    ),
    Case(
        "label change: modified",
        [ev("ADDED", "a")],
        [ev("MODIFIED", "a", obj("a", meta={"labels": {"x": "y"}}))],
        modified=["a"],
    ),
    Case("delete of unknown: nothing", [], [ev("DELETED", "ghost", obj("ghost"))]),
    Case("delete of known", [ev("ADDED", "a")], [ev("DELETED", "a", obj("a"))], deleted=["a"]),
    Case(
        "delete without object reports last known",
        [ev("ADDED", "a")],
        [ev("DELETED", "a")],
        deleted=["a"],
    ),
    Case(
        "created then deleted in one batch: nothing",
        [],
        [ev("ADDED", "a"), ev("DELETED", "a", obj("a"))],
    ),
    Case(
        "modified then reverted in one batch: nothing",
        [ev("ADDED", "a")],
        [ev("MODIFIED", "a", obj("a", phase="X")), ev("MODIFIED", "a", obj("a", rv="3"))],
    ),
    Case(
        "re-create with new uid in one batch: modified",
        [ev("ADDED", "a")],
        [ev("DELETED", "a", obj("a")), ev("ADDED", "a", obj("a", uid="new"))],
        modified=["a"],
    ),
    Case(
        "uid change without delete event: modified",
        [ev("ADDED", "a")],
        [ev("MODIFIED", "a", obj("a", uid="other"))],
        modified=["a"],
    ),
    Case(
        "re-create across batches: created again",
        [ev("ADDED", "a"), ev("DELETED", "a")],
        [ev("ADDED", "a", obj("a", uid="new"))],
        created=["a"],
    ),
    Case("ADDED of known unchanged object: nothing", [ev("ADDED", "a")], [ev("ADDED", "a")]),
    Case(
        "list with a missing object: deleted",
        [ev("ADDED", "a"), ev("ADDED", "b")],
        [
            ev("LIST_BEGIN", list_id="L1"),
            ev("LISTED", "a", list_id="L1"),
            ev("LIST_END", list_id="L1"),
        ],
        deleted=["b"],
    ),
    Case(
        "list with a changed and a new object",
        [ev("ADDED", "a")],
        [
            ev("LIST_BEGIN", list_id="L1"),
            ev("LISTED", "a", obj("a", phase="Y"), list_id="L1"),
            ev("LISTED", "n", list_id="L1"),
            ev("LIST_END", list_id="L1"),
        ],
        created=["n"],
        modified=["a"],
    ),
    Case(
        "list of another kind leaves Pods alone",
        [ev("ADDED", "a")],
        [
            ev("LIST_BEGIN", list_id="L1", k8s_kind="Service"),
            ev("LIST_END", list_id="L1", k8s_kind="Service"),
        ],
    ),
    Case(
        "watch event during the list counts as seen",
        [ev("ADDED", "a"), ev("ADDED", "b")],
        [
            ev("LIST_BEGIN", list_id="L1"),
            ev("MODIFIED", "b", obj("b", phase="Z")),
            ev("LISTED", "a", list_id="L1"),
            ev("LIST_END", list_id="L1"),
        ],
        modified=["b"],
    ),
    Case(
        "LIST_END without LIST_BEGIN deletes nothing",
        [ev("ADDED", "a")],
        [ev("LIST_END", list_id="L9")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_net_delta_table(case: Case) -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, case.setup)
    outcome = run(snapshot, case.batch)
    assert names(outcome) == {
        "created": sorted(case.created),
        "deleted": sorted(case.deleted),
        "modified": sorted(case.modified),
    }
    assert len(outcome.deltas) <= 1
    # Restoring the snapshot from its changelog gives the same state.
    builder = SnapshotBuilder("c1")
    for key, value in encode_snapshot(snapshot):
        builder.apply(key, value)
    assert builder.snapshot == snapshot


def test_sequence_counts_deltas_only() -> None:
    snapshot = PartitionSnapshot()
    assert run(snapshot, [ev("ADDED", "a")]).deltas[0].sequence == 1
    assert run(snapshot, [ev("MODIFIED", "a", obj("a", rv="5"))]).deltas == []
    assert run(snapshot, [ev("MODIFIED", "a", obj("a", phase="Q"))]).deltas[0].sequence == 2
    assert run(snapshot, [ev("DELETED", "a")]).deltas[0].sequence == 3
    # The instance is empty but keeps counting when it comes back.
    assert run(snapshot, [ev("ADDED", "a")]).deltas[0].sequence == 4


def test_outcome_leaves_snapshot_alone_until_committed() -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, [ev("ADDED", "a")])
    apply_batch(snapshot, [ev("DELETED", "a"), ev("ADDED", "b")])  # e.g. transaction aborted
    instance = snapshot.instance("i1")
    assert instance is not None
    assert [k.name for k in instance.resources] == ["a"]
    assert instance.sequence == 1


def test_one_delta_per_instance_and_managed_fields_never_reported() -> None:
    snapshot = PartitionSnapshot()
    body = obj("a", meta={"managedFields": [{"manager": "m"}]})
    outcome = run(
        snapshot,
        [ev("ADDED", "a", body), ev("ADDED", "b"), ev("ADDED", "c", instance="i2")],
    )
    assert [(d.instance_id, d.sequence) for d in outcome.deltas] == [("i1", 1), ("i2", 1)]
    reported = json.loads(outcome.deltas[0].created[0].status)
    assert "managedFields" not in reported["metadata"]
    assert reported["metadata"]["resourceVersion"] == "1"


def test_deleted_entry_carries_the_servers_last_object() -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, [ev("ADDED", "a")])
    outcome = run(snapshot, [ev("DELETED", "a", obj("a", phase="Terminating"))])
    assert json.loads(outcome.deltas[0].deleted[0].status)["status"]["phase"] == "Terminating"


def test_a_restored_snapshot_reports_each_objects_last_state_when_it_is_deleted() -> None:
    live = PartitionSnapshot()
    run(live, [ev("ADDED", "a", obj("a", phase="Pending")), ev("ADDED", "b")])
    run(live, [ev("MODIFIED", "a", obj("a", phase="Running"))])
    builder = SnapshotBuilder("c1")
    for key, value in encode_outcome(run(live, [ev("ADDED", "c")])):  # a record read twice
        builder.apply(key, value)
    for key, value in encode_snapshot(live):
        builder.apply(key, value)
    restored = builder.snapshot
    # Without an object in the event, a deletion reports the object kept by the restore;
    # one modified after the restore reports its new state.
    run(restored, [ev("MODIFIED", "b", obj("b", phase="Failed"))])
    outcome = run(restored, [ev("DELETED", "a"), ev("DELETED", "b"), ev("DELETED", "c")])
    deleted = {r.key.name: json.loads(r.status) for r in outcome.deltas[0].deleted}
    assert {name: body["status"]["phase"] for name, body in deleted.items()} == {
        "a": "Running",
        "b": "Failed",
        "c": "Running",
    }


def test_list_end_emits_synced_per_instance_after_deletes() -> None:
    snapshot = PartitionSnapshot()
    run(
        snapshot,
        [ev("ADDED", "a"), ev("ADDED", "b", instance="i2"), ev("ADDED", "z", instance="i3")],
    )
    outcome = run(
        snapshot,
        [
            ev("LIST_BEGIN", list_id="L1"),
            ev("LISTED", "a", list_id="L1"),
            ev("LIST_END", list_id="L1"),
        ],
    )
    assert [(d.instance_id, names(outcome, d.instance_id)["deleted"]) for d in outcome.deltas] == [
        ("i2", ["b"]),
        ("i3", ["z"]),
    ]
    assert sorted((s.instance_id, s.sequence) for s in outcome.synced) == [
        ("i1", 1),
        ("i2", 2),
        ("i3", 2),
    ]
    assert snapshot.open_lists == {}


def test_list_spanning_batches_survives_a_restore() -> None:
    """A crash between LIST_BEGIN and LIST_END: the restored snapshot still knows the list."""
    snapshot = PartitionSnapshot()
    run(snapshot, [ev("ADDED", "a"), ev("ADDED", "b")])
    records = []
    for batch in (
        [ev("LIST_BEGIN", list_id="L1")],
        [ev("LISTED", "a", list_id="L1")],
    ):
        records.extend(encode_outcome(run(snapshot, batch)))
    builder = SnapshotBuilder("c1")
    for key, value in encode_snapshot(snapshot):
        builder.apply(key, value)
    restored = builder.snapshot
    outcome = run(restored, [ev("LIST_END", list_id="L1")])
    assert names(outcome)["deleted"] == ["b"]
    assert records, "the list progress was persisted"


def test_namespaced_list_scope_only_touches_its_namespace() -> None:
    snapshot = PartitionSnapshot()
    run(snapshot, [ev("ADDED", "a"), ev("ADDED", "o", namespace="other")])
    begin = ev("LIST_BEGIN", list_id="L1")
    end = ev("LIST_END", list_id="L1")
    scoped = [
        ResourceEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "namespace": "ns"})
        for e in (begin, end)
    ]
    outcome = run(snapshot, [scoped[0], scoped[1]])
    assert names(outcome)["deleted"] == ["a"]
    instance = snapshot.instance("i1")
    assert instance is not None
    assert list(instance.resources) == [ResourceKey("c1", "", "v1", "Pod", "other", "o")]


def test_changelog_replay_of_outcomes_equals_live_state() -> None:
    snapshot = PartitionSnapshot()
    builder = SnapshotBuilder("c1")
    batches = [
        [ev("ADDED", "a"), ev("ADDED", "b"), ev("ADDED", "c", instance="i2")],
        [ev("MODIFIED", "a", obj("a", phase="P")), ev("DELETED", "b")],
        [ev("LIST_BEGIN", list_id="L"), ev("LISTED", "a", obj("a", phase="P"), list_id="L")],
        [ev("LIST_END", list_id="L")],
        [ev("ADDED", "b", obj("b", uid="again"))],
    ]
    for batch in batches:
        for key, value in encode_outcome(run(snapshot, batch)):
            builder.apply(key, value)
    assert builder.snapshot == snapshot


def _with_text(event: ResourceEvent) -> ResourceEvent:
    if event.object is None:
        return event
    text = json.dumps(event.object, separators=(",", ":"))
    return dataclasses.replace(event, object_text=text)


def _outcome_view(outcome: BatchOutcome) -> Any:
    return (
        [(d.instance_id, d.sequence, d.created, d.deleted, d.modified) for d in outcome.deltas],
        outcome.resource_writes,
        outcome.sequence_writes,
        outcome.list_writes,
        [(n.instance_id, n.sequence, n.list_id) for n in outcome.synced],
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_object_text_as_received_changes_nothing_but_speed(case: Case) -> None:
    """With the watcher's text (identical text short-cuts the digest) the outcome is the same."""
    parsed_only, with_text = PartitionSnapshot(), PartitionSnapshot()
    for batch in (case.setup, case.batch, case.setup, case.batch):
        expected = run(parsed_only, batch)
        got = run(with_text, [_with_text(event) for event in batch])
        assert _outcome_view(got) == _outcome_view(expected)


def test_a_relist_of_identical_texts_only_marks_them_seen() -> None:
    snapshot = PartitionSnapshot()
    bodies = {name: obj(name) for name in ("a", "b")}
    run(snapshot, [_with_text(ev("ADDED", n, bodies[n])) for n in bodies])
    relist = [ev("LIST_BEGIN", list_id="L1")]
    relist += [_with_text(ev("LISTED", n, bodies[n], list_id="L1")) for n in bodies]
    outcome = run(snapshot, relist)
    assert outcome.deltas == []
    instance = snapshot.instance("i1")
    assert instance is not None
    assert {e.seen_list for e in instance.resources.values()} == {"L1"}
    # The same object under a new uid (deleted and re-created meanwhile) is a modification.
    recreated = obj("a", uid="new-uid")
    outcome = run(snapshot, [_with_text(ev("MODIFIED", "a", recreated))])
    assert names(outcome)["modified"] == ["a"]
