"""Turn what the watcher saw into ``schemas/resource-event.avsc`` records (no I/O).

The record is the one contract between the watcher and the differ, so every field is filled
here, in one place: the object travels as JSON text without ``metadata.managedFields`` (large,
changes on every write, never part of a delta), objects are keyed by their instance-id, and
list markers carry no key because they go to every partition. ``leader_epoch`` is the Lease's
``leaseTransitions`` of the term that observed it and ``leader_lease`` that Lease (both None
without leader election).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from deltawatch.resource_identity import EventType, without_managed_fields
from services.watcher.kinds import WatchTarget

ListReason = Literal["initial", "expired", "error", "restart"]
Obj = dict[str, Any]


@dataclass(frozen=True)
class ListRun:
    """One (re)list of one target: the id shared by its markers and its LISTED objects."""

    list_id: str
    reason: ListReason
    resource_version: str


@dataclass(frozen=True)
class Leader:
    """The term a record was observed in: its Lease (``namespace/name``) and epoch."""

    lease: str
    epoch: int


def leader_fields(leader: Leader | None) -> Obj:
    if leader is None:
        return {"leader_epoch": None, "leader_lease": None}
    return {"leader_epoch": leader.epoch, "leader_lease": leader.lease}


def instance_label_value(obj: Obj, label: str) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    value = labels.get(label) if isinstance(labels, dict) else None
    return value if isinstance(value, str) and value else None


def object_record(
    event_type: EventType,
    target: WatchTarget,
    obj: Obj,
    instance_id: str,
    *,
    cluster: str,
    observed_at: datetime,
    list_run: ListRun | None = None,
    leader: Leader | None = None,
) -> Obj:
    metadata = obj.get("metadata") or {}
    return {
        "type": event_type,
        "cluster": cluster,
        "instance_id": instance_id,
        "group": target.group,
        "version": target.version,
        "kind": target.kind,
        "namespace": metadata.get("namespace") or None,
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "resource_version": str(metadata.get("resourceVersion") or ""),
        "observed_at": observed_at,
        "list_id": list_run.list_id if list_run else None,
        "list_reason": list_run.reason if list_run else None,
        "object": json.dumps(without_managed_fields(obj), separators=(",", ":")),
        **leader_fields(leader),
    }


def marker_record(
    event_type: Literal[EventType.LIST_BEGIN, EventType.LIST_END],
    target: WatchTarget,
    list_run: ListRun,
    *,
    cluster: str,
    observed_at: datetime,
    namespaced: bool = True,
    leader: Leader | None = None,
) -> Obj:
    """A list marker; ``namespace`` is the namespace the list covered (None: all of them)."""
    return {
        "type": event_type,
        "cluster": cluster,
        "instance_id": None,
        "group": target.group,
        "version": target.version,
        "kind": target.kind,
        "namespace": target.namespace if namespaced else None,
        "name": None,
        "uid": None,
        "resource_version": list_run.resource_version,
        "observed_at": observed_at,
        "list_id": list_run.list_id,
        "list_reason": list_run.reason,
        "object": None,
        **leader_fields(leader),
    }
