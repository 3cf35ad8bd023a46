"""The net change of one target (a subscription, a CPS anchor) since it was last told.

Throttling (CONTRACT §6) means several deltas reach a target as *one* callback, and that
callback must be the net change against what the target was last told, not a concatenation:
a created-then-deleted resource vanishes, repeated modifications collapse to the latest
status, and a deleted-then-recreated resource is a modification, or nothing at all when it
came back with exactly the status it had.

The trick is to remember, per resource key touched since the last callback, only two facts:
whether the resource existed in the target's view before (a ``created`` says it did not, a
``deleted`` or ``modified`` says it did) and what it looks like now. The told object itself
is only known when the first touch was a delete (the delete carries the last object), which
is exactly the case where "re-created with the same status" has to be recognised. So the
engine never stores a copy of the target's whole view: memory is proportional to what
changed inside one window.

Pure: no I/O, no clock. Entries are the seed's ResourceStatus JSON objects plus
``namespace`` and ``cluster`` (CONTRACT §5, §10); a resource is identified by (cluster, group,
version, kind, namespace, name). Entries written by the release before clusters (deltas still
on the topic, persisted state) have no ``cluster``: :func:`with_cluster` gives them the one
they belong to as they are read, so old and new entries of one resource meet under one key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deltawatch.resource_identity import ResourceKey

Entry = dict[str, Any]
CHANGE_KINDS = ("created", "deleted", "modified")


def resource_key(entry: Entry) -> str:
    """The :attr:`ResourceKey.path` of a ResourceStatus entry (lenient: any value is spelt)."""
    gvk = entry.get("GVK") or {}
    return ResourceKey(
        str(entry.get("cluster", "")),
        str(gvk.get("Group", "")),
        str(gvk.get("Version", "")),
        str(gvk.get("Kind", "")),
        str(entry.get("namespace", "")),
        str(entry.get("name", "")),
    ).path


def with_cluster(entry: Entry, cluster: str) -> Entry:
    """``entry``, with ``"cluster"`` when it had none (it comes from before clusters)."""
    return entry if "cluster" in entry else {**entry, "cluster": cluster}


@dataclass(frozen=True)
class ResourceChanges:
    """``{"created": [...], "deleted": [...], "modified": [...]}`` of the seed's payload."""

    created: tuple[Entry, ...] = ()
    deleted: tuple[Entry, ...] = ()
    modified: tuple[Entry, ...] = ()

    @classmethod
    def from_json(cls, document: dict[str, Any], cluster: str) -> ResourceChanges:
        """A delta's ``resource-changes``; ``cluster`` is the delta's, for entries without one."""

        def entries(name: str) -> tuple[Entry, ...]:
            value = document.get(name) or []
            if not isinstance(value, list):
                raise ValueError(f"resource-changes.{name} is not a list")
            for item in value:
                if not isinstance(item, dict):
                    raise ValueError(f"resource-changes.{name} holds a non-object entry")
            return tuple(with_cluster(item, cluster) for item in value)

        return cls(entries("created"), entries("deleted"), entries("modified"))

    def to_json(self) -> dict[str, list[Entry]]:
        return {
            "created": list(self.created),
            "deleted": list(self.deleted),
            "modified": list(self.modified),
        }

    @property
    def size(self) -> int:
        return len(self.created) + len(self.deleted) + len(self.modified)

    def __bool__(self) -> bool:
        return self.size > 0


@dataclass
class _Touched:
    existed_before: bool
    """Whether the target's last-told view held this resource."""
    told: Entry | None
    """The told entry, when known (first touch was a delete); None when unknown or absent."""
    now: Entry | None
    """The current entry, None when the resource does not exist now."""
    last_deleted: Entry | None = None
    """The most recent delete entry: what a net ``deleted`` reports as the last object."""


@dataclass
class NetDelta:
    """Accumulates deltas; :meth:`net` is the change to tell the target."""

    _touched: dict[str, _Touched] = field(default_factory=dict)

    def add(self, changes: ResourceChanges) -> int:
        """Fold one delta in; returns how many of its entries merged into earlier ones."""
        merged = 0
        for kind, entries in (
            ("created", changes.created),
            ("deleted", changes.deleted),
            ("modified", changes.modified),
        ):
            for entry in entries:
                key = resource_key(entry)
                touched = self._touched.get(key)
                if touched is None:
                    self._touched[key] = _first_touch(kind, entry)
                    continue
                merged += 1
                if kind == "deleted":
                    touched.now = None
                    touched.last_deleted = entry
                else:
                    touched.now = entry
        return merged

    def net(self) -> ResourceChanges:
        created: list[Entry] = []
        deleted: list[Entry] = []
        modified: list[Entry] = []
        for touched in self._touched.values():
            if touched.now is None:
                if touched.existed_before:
                    deleted.append(touched.last_deleted or touched.told or {})
            elif not touched.existed_before:
                created.append(touched.now)
            elif touched.told is None or touched.told != touched.now:
                modified.append(touched.now)
        return ResourceChanges(tuple(created), tuple(deleted), tuple(modified))

    @property
    def touched_count(self) -> int:
        return len(self._touched)

    def __bool__(self) -> bool:
        return bool(self._touched)

    def to_json(self) -> list[dict[str, Any]]:
        """Persistable form (the notifier's outbox changelog)."""
        return [
            {
                "existed-before": t.existed_before,
                "told": t.told,
                "now": t.now,
                "last-deleted": t.last_deleted,
            }
            for t in self._touched.values()
        ]

    @classmethod
    def from_json(cls, items: list[dict[str, Any]], legacy_cluster: str) -> NetDelta:
        """Read :meth:`to_json`; entries persisted before clusters belong to ``legacy_cluster``."""

        def entry(item: dict[str, Any], name: str) -> Entry | None:
            value = item.get(name)
            return None if value is None else with_cluster(value, legacy_cluster)

        delta = cls()
        for item in items:
            touched = _Touched(
                existed_before=bool(item["existed-before"]),
                told=entry(item, "told"),
                now=entry(item, "now"),
                last_deleted=entry(item, "last-deleted"),
            )
            sample = touched.now or touched.last_deleted or touched.told or {}
            delta._touched[resource_key(sample)] = touched
        return delta


def _first_touch(kind: str, entry: Entry) -> _Touched:
    if kind == "created":
        return _Touched(existed_before=False, told=None, now=entry)
    if kind == "deleted":
        return _Touched(existed_before=True, told=entry, now=None, last_deleted=entry)
    return _Touched(existed_before=True, told=None, now=entry)
