"""The differ's memory: per partition, per instance, the last reported state of each resource.

A delta is "what changed since the last delta", so the differ must remember, for every tracked
resource, exactly what it last reported and a digest of what counts for "modified". Two
constraints shape the types:

* **size** — up to millions of resources per process: an entry keeps the uid, a 16-byte
  content digest and an 8-byte digest of the object's text; the name, namespace and GVK live
  once, in the key, whose group/version/kind strings are interned. The object itself (compact
  JSON, parsed only when a delta reports it) is kept apart, in the partition's ``bodies``: in
  memory or on local disk (:mod:`services.differ.object_bodies`).
* **partition ownership** — state moves between differ replicas with the input partition, so
  the store is one :class:`PartitionSnapshot` per partition, restored and dropped as a unit.

JSON goes through ``orjson``: for the strings, 64-bit integers and objects Kubernetes serves,
its ``OPT_SORT_KEYS`` output is byte-identical to ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` (the digests persisted by earlier versions stay
valid); only some floats are spelt differently (``0.00001`` for ``1e-05``, as Go writes them).

Nothing here does I/O (but what ``bodies`` does); the changelog codec and the restore
read/write these types.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from deltawatch.resource_identity import ResourceKey, without_managed_fields
from services.differ.object_bodies import MemoryBodies, ObjectBodies

# Fields whose change alone is never a modification (CONTRACT §5).
IGNORED_METADATA = ("resourceVersion", "managedFields", "generation")
IGNORED_STATUS = ("observedGeneration",)


class ListScope(NamedTuple):
    """What one (re)list covers: a kind of one cluster, in one namespace or (empty) in all.

    The cluster is part of it (CONTRACT §10): a list of one cluster, however it interleaves
    with another's on a partition, can only ever delete its own cluster's objects."""

    cluster: str
    group: str
    version: str
    kind: str
    namespace: str

    def covers(self, key: ResourceKey) -> bool:
        return (
            key.kind == self.kind
            and key.cluster == self.cluster
            and key.group == self.group
            and key.version == self.version
            and (not self.namespace or key.namespace == self.namespace)
        )


class SnapshotEntry:
    """What the differ remembers of one resource to tell whether it changed.

    The object itself is not here but in the partition's :attr:`PartitionSnapshot.bodies`:
    a delta needs it only when it reports the resource (see :mod:`services.differ.object_bodies`).
    """

    __slots__ = ("digest", "seen_list", "text_digest", "uid")

    def __init__(self, uid: str, digest: bytes, text_digest: bytes, seen_list: str | None) -> None:
        self.uid = uid
        self.digest = digest
        """Of what counts for "modified" (:func:`content_digest`)."""
        self.text_digest = text_digest
        """Of the stored JSON text, byte for byte (:func:`text_digest`): an event carrying the
        same text is unchanged without computing its content digest."""
        self.seen_list = seen_list
        """The last list run (list_id) that saw this object, for deletes on relist."""

    def with_seen_list(self, list_id: str | None) -> SnapshotEntry:
        return SnapshotEntry(self.uid, self.digest, self.text_digest, list_id)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SnapshotEntry)
            and self.uid == other.uid
            and self.digest == other.digest
            and self.text_digest == other.text_digest
            and self.seen_list == other.seen_list
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SnapshotEntry(uid={self.uid!r}, digest={self.digest.hex()}, list={self.seen_list})"


def content_digest(obj: dict[str, Any]) -> bytes:
    """Digest of what counts for "modified": the object minus the CONTRACT §5 ignored fields."""
    relevant = dict(obj)
    metadata = relevant.get("metadata")
    if isinstance(metadata, dict):
        relevant["metadata"] = {k: v for k, v in metadata.items() if k not in IGNORED_METADATA}
    status = relevant.get("status")
    if isinstance(status, dict):
        relevant["status"] = {k: v for k, v in status.items() if k not in IGNORED_STATUS}
    canonical = orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).digest()


def text_digest(text: bytes) -> bytes:
    """8 bytes: only ever compared with the digest of the same resource's next text."""
    return hashlib.blake2b(text, digest_size=8).digest()


def compact_json(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def entry_from_object(
    obj: dict[str, Any], uid: str | None, seen_list: str | None, text: str | None = None
) -> tuple[SnapshotEntry, bytes]:
    """The entry for ``obj`` and the body to store; ``text`` is its JSON as received, reused
    when already clean."""
    stripped = without_managed_fields(obj)
    metadata = stripped.get("metadata")
    object_uid = metadata.get("uid") if isinstance(metadata, dict) else None
    body = text.encode() if text is not None and stripped is obj else compact_json(stripped)
    entry = SnapshotEntry(
        uid=uid or (object_uid if isinstance(object_uid, str) else ""),
        digest=content_digest(stripped),
        text_digest=text_digest(body),
        seen_list=seen_list,
    )
    return entry, body


@dataclass(slots=True)
class InstanceSnapshot:
    """One instance's resources in one partition, and how many deltas it has had."""

    sequence: int = 0
    resources: dict[ResourceKey, SnapshotEntry] = field(default_factory=dict)


@dataclass(slots=True)
class PartitionSnapshot:
    """Everything the differ knows for one input partition."""

    instances: dict[str, InstanceSnapshot] = field(default_factory=dict)
    open_lists: dict[ListScope, str] = field(default_factory=dict)
    """Lists begun (LIST_BEGIN seen) and not yet ended, by scope → list_id."""
    legacy_resources: set[tuple[str, ResourceKey]] = field(default_factory=set)
    """Resources restored from changelog records of the release without clusters: their old
    record must be deleted when the resource is next written, or compaction would one day
    leave only the old record and bring a since-deleted resource back."""
    legacy_lists: set[ListScope] = field(default_factory=set)
    """Open lists restored from such records (same reason)."""
    leader_epochs: dict[tuple[str, str], int] = field(default_factory=dict)
    """Per (cluster, Lease), the highest watcher leader epoch seen
    (:mod:`services.differ.leader_fence`)."""
    bodies: ObjectBodies = field(default_factory=MemoryBodies)
    """The objects of the resources above (:mod:`services.differ.object_bodies`)."""

    def instance(self, instance_id: str) -> InstanceSnapshot | None:
        return self.instances.get(instance_id)

    def resource_count(self) -> int:
        return sum(len(i.resources) for i in self.instances.values())

    def items(self) -> Iterator[tuple[str, ResourceKey, SnapshotEntry]]:
        for instance_id, instance in self.instances.items():
            for key, entry in instance.resources.items():
                yield instance_id, key, entry


class SnapshotStore:
    """The partitions this process owns; a partition's snapshot arrives and leaves as a unit."""

    def __init__(self) -> None:
        self._partitions: dict[int, PartitionSnapshot] = {}

    def put(self, partition: int, snapshot: PartitionSnapshot) -> None:
        self._partitions[partition] = snapshot

    def get(self, partition: int) -> PartitionSnapshot:
        return self._partitions[partition]

    def drop(self, partition: int) -> None:
        self._partitions.pop(partition, None)

    def __contains__(self, partition: int) -> bool:
        return partition in self._partitions

    @property
    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    def resource_count(self) -> int:
        return sum(p.resource_count() for p in self._partitions.values())

    def instance_count(self) -> int:
        return sum(len(p.instances) for p in self._partitions.values())
