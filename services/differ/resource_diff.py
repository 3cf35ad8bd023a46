"""Apply a batch of resource events to a partition's snapshot and say what changed, net.

This is the seed's ``statusDelta`` (compare each resource's key and value before and after) made
event-driven: instead of polling two full states, the batch's events are applied to an
*overlay* over the partition snapshot, and at the end each touched instance's resources are
compared before / after. Three consequences:

* The output is the **net** change of the batch: created-then-deleted vanishes, a modification
  reverted within the batch is nothing, a delete + re-create (new uid) is a modification.
* The snapshot itself is untouched until :meth:`BatchOutcome.commit_to` — called only once the
  Kafka transaction carrying the deltas committed. An aborted transaction simply drops the
  outcome; no state has to be rebuilt.
* List markers implement client-go's ``Replace``: at ``LIST_END`` every known resource in the
  list's scope that the list did not see is deleted, reporting its last known object, exactly
  as ``DeletedFinalStateUnknown`` does. Which resources a list saw is recorded *on the entries*
  (``seen_list``) rather than in a side set, so it is persisted with them and a crash in the
  middle of a long list loses nothing.

An object whose JSON text is byte-for-byte the stored one (the common case of a relist or
a watcher restart: hundreds of thousands of unchanged objects; compared by digest, since the
stored object may be on disk) is known unchanged without computing its content digest.

Stored objects are read (``snapshot.bodies``) only to report a deletion; every object written
comes with the event that carries it.

No I/O here: it is unit-tested directly with tables of cases.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from deltawatch.resource_identity import EventType, ResourceKey, without_managed_fields
from services.differ.object_bodies import ResourceSlot
from services.differ.resource_event import ResourceEvent
from services.differ.snapshot import (
    InstanceSnapshot,
    ListScope,
    PartitionSnapshot,
    SnapshotEntry,
    compact_json,
    entry_from_object,
    text_digest,
)


@dataclass(frozen=True, slots=True)
class ReportedResource:
    """One entry of a delta: the resource and the object to report (compact JSON)."""

    key: ResourceKey
    status: bytes


@dataclass(frozen=True, slots=True)
class InstanceDelta:
    """The net change of one instance's resources in one cluster (CONTRACT §10)."""

    instance_id: str
    cluster: str
    sequence: int
    time: datetime
    created: list[ReportedResource]
    deleted: list[ReportedResource]
    modified: list[ReportedResource]

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.created),
            "deleted": len(self.deleted),
            "modified": len(self.modified),
        }


@dataclass(frozen=True, slots=True)
class SyncedNotice:
    """A (re)list has been applied to this instance; ``sequence`` is its delta count now."""

    instance_id: str
    sequence: int
    list_id: str
    scope: ListScope
    time: datetime


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produced: deltas and notices to emit, and the state writes to persist."""

    deltas: list[InstanceDelta] = field(default_factory=list)
    synced: list[SyncedNotice] = field(default_factory=list)
    resource_writes: dict[ResourceSlot, SnapshotEntry | None] = field(default_factory=dict)
    body_writes: dict[ResourceSlot, bytes] = field(default_factory=dict)
    """The object of every resource written (not deleted) above."""
    sequence_writes: dict[str, int] = field(default_factory=dict)
    list_writes: dict[ListScope, str | None] = field(default_factory=dict)
    legacy_retired: list[ResourceSlot] = field(default_factory=list)
    """Written resources whose record of the release without clusters must be deleted."""
    legacy_lists_retired: list[ListScope] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def commit_to(
        self,
        snapshot: PartitionSnapshot,
        changelog: Iterable[tuple[bytes, bytes | None]] = (),
        input_offset: int | None = None,
    ) -> int:
        """Make the batch's state the partition's state (after the transaction committed).

        ``changelog`` (the records the transaction wrote for the partition) and
        ``input_offset`` (the offset it committed) go to the snapshot's bodies, which keep a
        local copy of them if they are on disk (:mod:`services.differ.object_bodies`).
        Returns how many resources the partition tracks more (or fewer) than before.
        """
        added = 0
        bodies = snapshot.bodies
        for slot, entry in self.resource_writes.items():
            instance_id, key = slot
            instance = snapshot.instances.get(instance_id)
            if entry is None:
                if instance is not None and instance.resources.pop(key, None) is not None:
                    added -= 1
                    bodies.delete_body(slot)
                continue
            if instance is None:
                instance = snapshot.instances[instance_id] = InstanceSnapshot()
            if key not in instance.resources:
                added += 1
            instance.resources[key] = entry
            bodies.put_body(slot, self.body_writes[slot])
        for instance_id, sequence in self.sequence_writes.items():
            instance = snapshot.instances.get(instance_id)
            if instance is None:
                instance = snapshot.instances[instance_id] = InstanceSnapshot()
            instance.sequence = sequence
        for scope, list_id in self.list_writes.items():
            if list_id is None:
                snapshot.open_lists.pop(scope, None)
            else:
                snapshot.open_lists[scope] = list_id
        snapshot.legacy_resources.difference_update(self.legacy_retired)
        snapshot.legacy_lists.difference_update(self.legacy_lists_retired)
        for record_key, value in changelog:
            bodies.record(record_key, value)
        bodies.flush(input_offset)
        return added


class _Overlay:
    """Reads through the batch's writes to the partition snapshot."""

    def __init__(self, base: PartitionSnapshot) -> None:
        self.base = base
        self.writes: dict[str, dict[ResourceKey, SnapshotEntry | None]] = {}
        self.before: dict[str, dict[ResourceKey, SnapshotEntry | None]] = {}
        self.bodies: dict[ResourceSlot, bytes] = {}
        """The object of each resource the batch wrote."""
        self.last_object: dict[ResourceSlot, bytes] = {}
        self.times: dict[tuple[str, str], datetime] = {}
        """Latest ``observed_at`` per (instance, cluster): the time of that delta."""
        self.lists: dict[ListScope, str | None] = {}

    def current(self, instance_id: str, key: ResourceKey) -> SnapshotEntry | None:
        written = self.writes.get(instance_id)
        if written is not None and key in written:
            return written[key]
        instance = self.base.instances.get(instance_id)
        return instance.resources.get(key) if instance is not None else None

    def body(self, instance_id: str, key: ResourceKey) -> bytes:
        """The current object of a resource that :meth:`current` has."""
        slot = (instance_id, key)
        written = self.bodies.get(slot)
        return written if written is not None else self.base.bodies.body(slot)

    def set(
        self, instance_id: str, key: ResourceKey, entry: SnapshotEntry | None, body: bytes = b""
    ) -> None:
        """Write (``body`` is then its object) or, with ``None``, delete a resource."""
        before = self.before.setdefault(instance_id, {})
        if key not in before:
            before[key] = self.current(instance_id, key)
        self.writes.setdefault(instance_id, {})[key] = entry
        if entry is not None:
            self.bodies[(instance_id, key)] = body

    def touch(self, instance_id: str, cluster: str, time: datetime) -> None:
        previous = self.times.get((instance_id, cluster))
        if previous is None or time > previous:
            self.times[(instance_id, cluster)] = time
        self.before.setdefault(instance_id, {})

    def open_list(self, scope: ListScope) -> str | None:
        if scope in self.lists:
            return self.lists[scope]
        return self.base.open_lists.get(scope)

    def list_covering(self, key: ResourceKey) -> str | None:
        """The open list whose scope covers ``key`` (namespaced scope first), if any."""
        if not self.lists and not self.base.open_lists:
            return None  # no list under way, the common case: no scope keys to build
        for namespace in (key.namespace, ""):
            scope = ListScope(key.cluster, key.group, key.version, key.kind, namespace)
            list_id = self.open_list(scope)
            if list_id is not None:
                return list_id
        return None

    def instance_ids(self) -> list[str]:
        ids = list(self.base.instances)
        ids.extend(i for i in self.writes if i not in self.base.instances)
        return ids

    def keys(self, instance_id: str) -> list[ResourceKey]:
        instance = self.base.instances.get(instance_id)
        keys = list(instance.resources) if instance is not None else []
        written = self.writes.get(instance_id, {})
        keys.extend(k for k in written if instance is None or k not in instance.resources)
        return keys


def _key(event: ResourceEvent) -> ResourceKey:
    assert event.name is not None
    return ResourceKey.of(
        event.cluster, event.group, event.version, event.kind, event.namespace, event.name
    )


def _apply_upsert(overlay: _Overlay, event: ResourceEvent) -> None:
    assert event.instance_id is not None
    assert event.object is not None
    key = _key(event)
    current = overlay.current(event.instance_id, key)
    if event.type is EventType.LISTED:
        assert event.list_id is not None
        seen_list: str | None = sys.intern(event.list_id)
    else:
        seen_list = overlay.list_covering(key) or (current.seen_list if current else None)
    overlay.touch(event.instance_id, event.cluster, event.observed_at)
    text = _same_text(current, event)
    if current is not None and text is not None:
        if current.seen_list != seen_list:
            overlay.set(event.instance_id, key, current.with_seen_list(seen_list), text)
        return
    new, body = entry_from_object(event.object, event.uid, seen_list, event.object_text)
    if current is not None and current.digest == new.digest and current.uid == new.uid:
        if current.seen_list != seen_list:
            # Written anyway (the list it was seen by must be persisted): with today's text.
            overlay.set(event.instance_id, key, new, body)
        return
    overlay.set(event.instance_id, key, new, body)


def _same_text(current: SnapshotEntry | None, event: ResourceEvent) -> bytes | None:
    """The event's text when it is exactly the stored object (so also the same digest) and uid."""
    if current is None or event.object_text is None or event.uid != current.uid:
        return None
    text = event.object_text.encode()
    return text if current.text_digest == text_digest(text) else None


def _apply_delete(overlay: _Overlay, event: ResourceEvent) -> None:
    assert event.instance_id is not None
    key = _key(event)
    current = overlay.current(event.instance_id, key)
    if current is None:
        return  # delete of a resource never reported: nothing to tell
    overlay.touch(event.instance_id, event.cluster, event.observed_at)
    if event.object:
        last = compact_json(without_managed_fields(event.object))
    else:
        last = overlay.body(event.instance_id, key)
    overlay.last_object[(event.instance_id, key)] = last
    overlay.set(event.instance_id, key, None)


def _scope(event: ResourceEvent) -> ListScope:
    intern = sys.intern
    return ListScope(
        intern(event.cluster), intern(event.group), event.version, event.kind, event.namespace
    )


def _apply_list_end(
    overlay: _Overlay, event: ResourceEvent, pending: list[tuple[str, str, ListScope, datetime]]
) -> str | None:
    """Delete what the list did not see; return a warning when the list was never begun."""
    scope = _scope(event)
    assert event.list_id is not None
    if overlay.open_list(scope) != event.list_id:
        return (
            f"LIST_END {event.list_id} for {scope.group}/{scope.version}/{scope.kind} "
            f"without its LIST_BEGIN (open: {overlay.open_list(scope)}); ignored"
        )
    for instance_id in overlay.instance_ids():
        affected = False
        for key in overlay.keys(instance_id):
            if not scope.covers(key):
                continue
            entry = overlay.current(instance_id, key)
            if entry is None:
                continue
            affected = True
            if entry.seen_list != event.list_id:
                overlay.last_object[(instance_id, key)] = overlay.body(instance_id, key)
                overlay.set(instance_id, key, None)
        if affected:
            overlay.touch(instance_id, scope.cluster, event.observed_at)
            pending.append((instance_id, event.list_id, scope, event.observed_at))
    overlay.lists[scope] = None
    return None


Changes = tuple[list[ReportedResource], list[ReportedResource], list[ReportedResource]]


def _instance_changes(
    overlay: _Overlay, instance_id: str, before: dict[ResourceKey, SnapshotEntry | None]
) -> dict[str, Changes]:
    """Per cluster (in name order), the resources of one instance the batch created, deleted
    and modified, in key order."""
    by_cluster: dict[str, Changes] = {}
    for key in sorted(before):
        created, deleted, modified = by_cluster.setdefault(key.cluster, ([], [], []))
        old = before[key]
        new = overlay.current(instance_id, key)
        slot = (instance_id, key)
        if old is None and new is not None:
            created.append(ReportedResource(key, overlay.bodies[slot]))
        elif old is not None and new is None:
            deleted.append(ReportedResource(key, overlay.last_object[slot]))
        elif (
            old is not None and new is not None and (old.digest != new.digest or old.uid != new.uid)
        ):
            modified.append(ReportedResource(key, overlay.bodies[slot]))
    return by_cluster


def apply_batch(snapshot: PartitionSnapshot, events: Iterable[ResourceEvent]) -> BatchOutcome:
    """Apply ``events`` (one partition, in offset order) to ``snapshot`` without changing it."""
    overlay = _Overlay(snapshot)
    outcome = BatchOutcome()
    pending_synced: list[tuple[str, str, ListScope, datetime]] = []
    for event in events:
        if event.type in (EventType.ADDED, EventType.MODIFIED, EventType.LISTED):
            _apply_upsert(overlay, event)
        elif event.type is EventType.DELETED:
            _apply_delete(overlay, event)
        elif event.type is EventType.LIST_BEGIN:
            assert event.list_id is not None
            overlay.lists[_scope(event)] = sys.intern(event.list_id)
        else:
            warning = _apply_list_end(overlay, event, pending_synced)
            if warning:
                outcome.warnings.append(warning)

    sequences: dict[str, int] = {}
    for instance_id, before in overlay.before.items():
        base = snapshot.instances.get(instance_id)
        sequence = base.sequence if base is not None else 0
        for cluster, (created, deleted, modified) in _instance_changes(
            overlay, instance_id, before
        ).items():
            if not (created or deleted or modified):
                continue
            sequence += 1  # per instance, across its clusters (CONTRACT §10)
            outcome.sequence_writes[instance_id] = sequence
            time = overlay.times[(instance_id, cluster)]
            outcome.deltas.append(
                InstanceDelta(instance_id, cluster, sequence, time, created, deleted, modified)
            )
        sequences[instance_id] = sequence
        base_resources = base.resources if base is not None else {}
        for key, entry in overlay.writes.get(instance_id, {}).items():
            if base_resources.get(key) != entry:
                slot = (instance_id, key)
                outcome.resource_writes[slot] = entry
                if entry is not None:
                    outcome.body_writes[slot] = overlay.bodies[slot]
                if slot in snapshot.legacy_resources:
                    outcome.legacy_retired.append(slot)

    for scope, list_id in overlay.lists.items():
        if snapshot.open_lists.get(scope) != list_id:
            outcome.list_writes[scope] = list_id
            if scope in snapshot.legacy_lists:
                outcome.legacy_lists_retired.append(scope)
    outcome.synced = [
        SyncedNotice(instance_id, sequences[instance_id], list_id, scope, time)
        for instance_id, list_id, scope, time in pending_synced
    ]
    return outcome
