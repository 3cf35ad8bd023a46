"""The differ's local state (RocksDB in a temporary directory): what a restart finds on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.differ.changelog_codec import encode_outcome
from services.differ.local_state import LocalStateDb
from services.differ.object_bodies import ObjectBodies
from services.differ.resource_diff import apply_batch
from services.differ.resource_event import ResourceEvent, parse_resource_event
from services.differ.restore import restore_from_local
from services.differ.snapshot import PartitionSnapshot


def event(
    kind: str, name: str, phase: str = "Running", list_id: str | None = None
) -> ResourceEvent:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "status": {"phase": phase},
    }
    record: dict[str, Any] = {
        "type": kind,
        "cluster": "c1",
        "instance_id": "inst",
        "group": "",
        "version": "v1",
        "kind": "Pod",
        "namespace": "ns",
        "name": name,
        "uid": f"uid-{name}",
        "list_id": list_id,
        "observed_at": 1_700_000_000_000,
        "object": json.dumps(obj, separators=(",", ":")),
    }
    return parse_resource_event(record)


def commit(snapshot: PartitionSnapshot, events: list[ResourceEvent], offset: int) -> None:
    """What the differ's loop does once a batch's transaction committed."""
    outcome = apply_batch(snapshot, events)
    outcome.commit_to(snapshot, encode_outcome(outcome), offset)


def bodies_of(snapshot: PartitionSnapshot, bodies: ObjectBodies) -> dict[str, Any]:
    return {key.name: json.loads(bodies.body((i, key))) for i, key, _entry in snapshot.items()}


def test_a_reopened_database_restores_the_committed_snapshot(tmp_path: Path) -> None:
    database = LocalStateDb(tmp_path)
    live = PartitionSnapshot(bodies=database.partition(3))
    commit(live, [event("ADDED", "a"), event("ADDED", "b"), event("ADDED", "c")], 3)
    commit(
        live,
        [
            event("MODIFIED", "a", "Pending"),
            event("DELETED", "c"),
            event("LIST_BEGIN", "", list_id="L1"),
        ],
        6,
    )
    expected = bodies_of(live, live.bodies)
    instances, open_lists = live.instances, live.open_lists
    # RocksDB's lock is released once nothing refers to the database any more (as at exit).
    del live
    database.close()
    del database

    reopened = LocalStateDb(tmp_path)
    state = reopened.partition(3)
    assert state.input_offset() == 6
    restored = restore_from_local(state, 3, "c1").snapshot
    assert restored.instances == instances
    assert restored.open_lists == open_lists
    assert bodies_of(restored, state) == expected
    assert expected["a"]["status"]["phase"] == "Pending"
    assert sorted(expected) == ["a", "b"]
    with pytest.raises(KeyError):
        state.body(("inst", next(iter(instances["inst"].resources))._replace(name="c")))
    reopened.close()


def test_a_fresh_partition_forgets_what_was_stored(tmp_path: Path) -> None:
    database = LocalStateDb(tmp_path)
    live = PartitionSnapshot(bodies=database.partition(0))
    commit(live, [event("ADDED", "a")], 1)
    fresh = database.fresh_partition(0)
    assert fresh.input_offset() is None
    assert list(fresh.changelog_records()) == []
    # Written by a restore with no committed offset to go with: never trusted.
    fresh.record(b'["s","inst"]', b'{"sequence":1}')
    fresh.flush(None)
    assert database.partition(0).input_offset() is None
    assert list(database.partition(0).changelog_records()) == [(b'["s","inst"]', b'{"sequence":1}')]
    database.close()


def test_partitions_are_kept_apart(tmp_path: Path) -> None:
    database = LocalStateDb(tmp_path)
    first = PartitionSnapshot(bodies=database.partition(0))
    commit(first, [event("ADDED", "a")], 1)
    assert database.partition(1).input_offset() is None
    assert list(database.partition(1).changelog_records()) == []
    assert database.partition(0).input_offset() == 1
    database.close()


def test_state_kept_for_another_group_or_topic_is_forgotten_at_open(tmp_path: Path) -> None:
    first = {"group": "g", "input": "events", "id:events": "A"}
    database = LocalStateDb(tmp_path, first)
    commit(PartitionSnapshot(bodies=database.partition(0)), [event("ADDED", "a")], 1)
    database.close()
    del database

    again = LocalStateDb(tmp_path, dict(first))
    assert again.partition(0).input_offset() == 1  # the same identity: kept
    again.close()
    del again

    # The input topic deleted and recreated: a new topic id, offsets from zero again.
    recreated = LocalStateDb(tmp_path, {**first, "id:events": "B"})
    assert recreated.partition(0).input_offset() is None
    assert list(recreated.partition(0).changelog_records()) == []
    recreated.close()


def test_a_dropped_partition_is_gone_and_the_others_stay(tmp_path: Path) -> None:
    database = LocalStateDb(tmp_path)
    commit(PartitionSnapshot(bodies=database.partition(0)), [event("ADDED", "a")], 1)
    commit(PartitionSnapshot(bodies=database.partition(2)), [event("ADDED", "b")], 4)
    assert database.stored_partitions() == [0, 2]
    database.drop_partition(2)
    assert database.stored_partitions() == [0]
    database.close()
    del database

    reopened = LocalStateDb(tmp_path)
    assert reopened.stored_partitions() == [0]
    assert reopened.partition(0).input_offset() == 1
    assert reopened.partition(2).input_offset() is None  # back as a new, empty partition
    assert list(reopened.partition(2).changelog_records()) == []
    reopened.close()


def test_the_changelog_copy_keeps_resource_records_without_their_object(tmp_path: Path) -> None:
    database = LocalStateDb(tmp_path)
    live = PartitionSnapshot(bodies=database.partition(0))
    commit(live, [event("ADDED", "a")], 1)
    records = dict(database.partition(0).changelog_records())
    [resource] = [v for k, v in records.items() if k.startswith(b'["r"')]
    assert b"\n" not in resource
    assert json.loads(resource)["uid"] == "uid-a"
    assert records[b'["s","inst"]'] == b'{"sequence":1}'  # other records whole
    database.close()
