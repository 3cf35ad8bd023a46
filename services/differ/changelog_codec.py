"""How a partition snapshot is written to, and rebuilt from, its compacted changelog topic.

One changelog record per *resource* (not per instance), so a delta touching one Pod of a
500-object instance writes one small record, and compaction keeps exactly one record per live
resource. Three record kinds, told apart by the first element of the JSON-array key:

* ``["r", instance, group, version, kind, namespace, name]`` → resource entry; tombstone when
  the resource is gone. Value: one line of JSON (uid, digest, seen list) + ``\\n`` + the
  object's compact JSON, so a restore never re-parses or re-serialises the object itself.
* ``["s", instance]`` → ``{"sequence": n}``: the delta count survives even when an instance has
  no resources left, so a re-appearing instance continues its sequence.
* ``["l", group, version, kind, namespace]`` → ``{"list-id": …}`` for a list in progress;
  tombstone once it ended.

Pure functions: :mod:`services.differ.restore` does the reading.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from deltawatch.resource_identity import ResourceKey
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


def encode_entry(entry: SnapshotEntry) -> bytes:
    header = {"uid": entry.uid, "digest": entry.digest.hex(), "list": entry.seen_list}
    return orjson.dumps(header) + b"\n" + entry.status


def decode_entry(value: bytes) -> SnapshotEntry:
    header_raw, _, status = value.partition(b"\n")
    header = orjson.loads(header_raw)
    seen = header.get("list")
    return SnapshotEntry(
        uid=header["uid"],
        digest=bytes.fromhex(header["digest"]),
        status=bytes(status),
        seen_list=sys.intern(seen) if isinstance(seen, str) else None,
    )


def encode_outcome(outcome: BatchOutcome) -> list[ChangelogRecord]:
    """The changelog records that persist a batch's state writes."""
    records: list[ChangelogRecord] = []
    for (instance_id, key), entry in outcome.resource_writes.items():
        record_key = _key("r", instance_id, *key)
        records.append((record_key, None if entry is None else encode_entry(entry)))
    for instance_id, sequence in outcome.sequence_writes.items():
        records.append((_key("s", instance_id), orjson.dumps({"sequence": sequence})))
    for scope, list_id in outcome.list_writes.items():
        value = None if list_id is None else orjson.dumps({"list-id": list_id})
        records.append((_key("l", *scope), value))
    return records


def encode_snapshot(snapshot: PartitionSnapshot) -> list[ChangelogRecord]:
    """Every record of a whole snapshot (benchmarks and tests seed a changelog with it)."""
    records: list[ChangelogRecord] = []
    for instance_id, key, entry in snapshot.items():
        records.append((_key("r", instance_id, *key), encode_entry(entry)))
    for instance_id, instance in snapshot.instances.items():
        records.append((_key("s", instance_id), orjson.dumps({"sequence": instance.sequence})))
    for scope, list_id in snapshot.open_lists.items():
        records.append((_key("l", *scope), orjson.dumps({"list-id": list_id})))
    return records


class SnapshotBuilder:
    """Rebuilds a :class:`PartitionSnapshot` from changelog records read in offset order."""

    def __init__(self) -> None:
        self.snapshot = PartitionSnapshot()
        self.records = 0

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
                instance_id = parts[1]
                resource = ResourceKey.of(*parts[2:7])
                if value is None:
                    existing = self.snapshot.instances.get(instance_id)
                    if existing is not None:
                        existing.resources.pop(resource, None)
                else:
                    self._instance(instance_id).resources[resource] = decode_entry(value)
            elif kind == "s":
                if value is not None:
                    self._instance(parts[1]).sequence = int(orjson.loads(value)["sequence"])
            elif kind == "l":
                scope = ListScope(sys.intern(parts[1]), parts[2], parts[3], parts[4])
                if value is None:
                    self.snapshot.open_lists.pop(scope, None)
                else:
                    self.snapshot.open_lists[scope] = sys.intern(orjson.loads(value)["list-id"])
            else:
                raise ChangelogDecodeError(f"unknown changelog record kind {kind!r}")
        except ChangelogDecodeError:
            raise
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChangelogDecodeError(f"unreadable changelog record {key!r}: {exc}") from exc
