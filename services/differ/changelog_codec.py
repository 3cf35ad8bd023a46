"""How a partition snapshot is written to, and rebuilt from, its compacted changelog topic.

One changelog record per *resource* (not per instance), so a delta touching one Pod of a
500-object instance writes one small record, and compaction keeps exactly one record per live
resource. Four record kinds, told apart by the first element of the JSON-array key:

* ``["r", instance, cluster, group, version, kind, namespace, name]`` → resource entry;
  tombstone when the resource is gone. Value: one line of JSON (uid, digest, text digest,
  seen list) + ``\\n`` + the object's compact JSON, so a restore never re-parses or
  re-serialises the object itself. (Records of releases before the text digest lack it: such
  an entry's next event is compared by content digest.) A differ's local copy of the
  changelog (:mod:`services.differ.local_state`) keeps the first line only.
* ``["s", instance]`` → ``{"sequence": n}``: the delta count survives even when an instance has
  no resources left, so a re-appearing instance continues its sequence.
* ``["l", cluster, group, version, kind, namespace]`` → ``{"list-id": …}`` for a list in
  progress; tombstone once it ended.
* ``["e", cluster, lease]`` → ``{"epoch": n}``: the highest watcher leader epoch seen for the
  cluster and Lease on the partition (:mod:`services.differ.leader_fence`).

The release before clusters (CONTRACT §10) wrote ``r`` and ``l`` keys without the cluster; they
are read as the differ's own ``DELTAWATCH_CLUSTER`` (the one cluster that release watched). Such
a record is deleted (a tombstone of its old key, written *before* the new record in the same
transaction) the first time its resource or list is written again, so that restore order stays
right and compaction can never leave the old record alone.

Pure functions: :mod:`services.differ.restore` does the reading.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from deltawatch.resource_identity import ResourceKey
from services.differ.object_bodies import MemoryBodies, ObjectBodies
from services.differ.resource_diff import BatchOutcome
from services.differ.snapshot import (
    InstanceSnapshot,
    ListScope,
    PartitionSnapshot,
    SnapshotEntry,
)


class ChangelogDecodeError(Exception):
    """A changelog record this version cannot read (restore stops: state must not be guessed)."""


ChangelogRecord = tuple[bytes, bytes | None]


def _key(*parts: str) -> bytes:
    return orjson.dumps(parts)


def encode_entry(entry: SnapshotEntry, body: bytes) -> bytes:
    header = {
        "uid": entry.uid,
        "digest": entry.digest.hex(),
        "text": entry.text_digest.hex(),
        "list": entry.seen_list,
    }
    return orjson.dumps(header) + b"\n" + body


_RESOURCE_KEY = b'["r"'
"""How every resource record's key begins (:func:`_key` writes no spaces)."""


def without_object(key: bytes, value: bytes) -> bytes:
    """A record as the local copy of the changelog keeps it: a resource record's header line
    only (its object is stored apart), any other record whole."""
    if not key.startswith(_RESOURCE_KEY):
        return value
    end = value.find(b"\n")
    return value[:end] if end >= 0 else value


def decode_entry(value: bytes) -> tuple[SnapshotEntry, int]:
    """The entry, and where its object starts in ``value`` (0: a local copy's record, which
    has no object)."""
    end = value.find(b"\n")
    header = orjson.loads(value[:end] if end >= 0 else value)
    seen = header.get("list")
    text = header.get("text")
    entry = SnapshotEntry(
        uid=header["uid"],
        digest=bytes.fromhex(header["digest"]),
        text_digest=bytes.fromhex(text) if isinstance(text, str) else b"",
        seen_list=sys.intern(seen) if isinstance(seen, str) else None,
    )
    return entry, end + 1


def encode_outcome(outcome: BatchOutcome) -> list[ChangelogRecord]:
    """The changelog records that persist a batch's state writes."""
    records: list[ChangelogRecord] = []
    for instance_id, key in outcome.legacy_retired:
        records.append((_key("r", instance_id, *key[1:]), None))
    for scope in outcome.legacy_lists_retired:
        records.append((_key("l", *scope[1:]), None))
    for slot, entry in outcome.resource_writes.items():
        record_key = _key("r", slot[0], *slot[1])
        value = None if entry is None else encode_entry(entry, outcome.body_writes[slot])
        records.append((record_key, value))
    for instance_id, sequence in outcome.sequence_writes.items():
        records.append((_key("s", instance_id), orjson.dumps({"sequence": sequence})))
    for scope, list_id in outcome.list_writes.items():
        value = None if list_id is None else orjson.dumps({"list-id": list_id})
        records.append((_key("l", *scope), value))
    return records


def encode_epochs(epochs: dict[tuple[str, str], int]) -> list[ChangelogRecord]:
    """The records of a batch's new highest leader epochs, per (cluster, Lease)."""
    return [(_key("e", *fenced), orjson.dumps({"epoch": n})) for fenced, n in epochs.items()]


def encode_snapshot(snapshot: PartitionSnapshot) -> list[ChangelogRecord]:
    """Every record of a whole snapshot (benchmarks and tests seed a changelog with it)."""
    records: list[ChangelogRecord] = []
    for instance_id, key, entry in snapshot.items():
        body = snapshot.bodies.body((instance_id, key))
        records.append((_key("r", instance_id, *key), encode_entry(entry, body)))
    for instance_id, instance in snapshot.instances.items():
        records.append((_key("s", instance_id), orjson.dumps({"sequence": instance.sequence})))
    for scope, list_id in snapshot.open_lists.items():
        records.append((_key("l", *scope), orjson.dumps({"list-id": list_id})))
    records.extend(encode_epochs(snapshot.leader_epochs))
    return records


class SnapshotBuilder:
    """Rebuilds a :class:`PartitionSnapshot` from changelog records read in offset order.

    ``legacy_cluster`` is the cluster of records written without one (see the module doc);
    the objects go to ``bodies`` (by default, into memory).
    """

    def __init__(self, legacy_cluster: str, bodies: ObjectBodies | None = None) -> None:
        self.snapshot = PartitionSnapshot(bodies=MemoryBodies() if bodies is None else bodies)
        self.records = 0
        self.legacy_cluster = sys.intern(legacy_cluster)

    def _instance(self, instance_id: str) -> InstanceSnapshot:
        instance = self.snapshot.instances.get(instance_id)
        if instance is None:
            instance = self.snapshot.instances[instance_id] = InstanceSnapshot()
        return instance

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        self.records += 1
        try:
            parts: Any = orjson.loads(key or b"")
            kind = parts[0]
            if kind == "r":
                self._apply_resource(parts, value)
            elif kind == "s":
                if value is not None:
                    self._instance(parts[1]).sequence = int(orjson.loads(value)["sequence"])
            elif kind == "l":
                self._apply_list(parts, value)
            elif kind == "e":
                self._apply_epoch(parts, value)
            else:
                raise ChangelogDecodeError(f"unknown changelog record kind {kind!r}")
        except ChangelogDecodeError:
            raise
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChangelogDecodeError(f"unreadable changelog record {key!r}: {exc}") from exc

    def _apply_resource(self, parts: list[str], value: bytes | None) -> None:
        # The one record kind a restore reads by the million: kept to the bare steps.
        instance_id = parts[1]
        if len(parts) == 8:
            resource = ResourceKey.of(parts[2], parts[3], parts[4], parts[5], parts[6], parts[7])
        elif len(parts) == 7:
            resource = self._legacy_resource(instance_id, parts, value)
        else:
            raise ValueError(f"{len(parts)} key parts")
        slot = (instance_id, resource)
        if value is None:
            existing = self.snapshot.instances.get(instance_id)
            if existing is not None and existing.resources.pop(resource, None) is not None:
                self.snapshot.bodies.delete_body(slot)
            return
        entry, body_start = decode_entry(value)
        self._instance(instance_id).resources[resource] = entry
        if body_start:
            self.snapshot.bodies.put_record_body(slot, value, body_start)

    def _legacy_resource(
        self, instance_id: str, parts: list[str], value: bytes | None
    ) -> ResourceKey:
        """The key of a record of the release without clusters, noted as still to be retired
        (unless this record is its tombstone: then it no longer needs deleting)."""
        resource = ResourceKey.of(self.legacy_cluster, *parts[2:7])
        legacy_set = self.snapshot.legacy_resources
        (legacy_set.discard if value is None else legacy_set.add)((instance_id, resource))
        return resource

    def _apply_epoch(self, parts: list[str], value: bytes | None) -> None:
        if len(parts) != 3:
            raise ValueError(f"{len(parts)} key parts")
        fenced = (sys.intern(parts[1]), sys.intern(parts[2]))
        epochs = self.snapshot.leader_epochs
        if value is None:
            epochs.pop(fenced, None)
        else:
            epochs[fenced] = int(orjson.loads(value)["epoch"])

    def _apply_list(self, parts: list[str], value: bytes | None) -> None:
        legacy = len(parts) == 5
        fields = [self.legacy_cluster, *parts[1:5]] if legacy else parts[1:6]
        if len(fields) != 5:
            raise ValueError(f"{len(parts)} key parts")
        intern = sys.intern
        scope = ListScope(intern(fields[0]), intern(fields[1]), fields[2], fields[3], fields[4])
        if legacy:
            legacy_set = self.snapshot.legacy_lists
            (legacy_set.discard if value is None else legacy_set.add)(scope)
        if value is None:
            self.snapshot.open_lists.pop(scope, None)
        else:
            self.snapshot.open_lists[scope] = sys.intern(orjson.loads(value)["list-id"])
