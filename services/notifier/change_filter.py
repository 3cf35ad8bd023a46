"""Which changes of a delta one subscription wants: ``change-types``, ``kinds``, namespaces.

A subscription's filters (CONTRACT §4, declared in :mod:`services.notifier.filter_fields`)
are applied to each delta *before* it reaches the subscription's coalescing lane, so a change
filtered out never opens a throttle window, never coalesces with anything, and never causes an
empty callback. The filter has no memory: an update of the filters applies from the next
delta on, and nothing told or not told under the old filters is revisited (the baseline rule,
as for a new subscription).

One case cannot be decided entry by entry: coalescing turns "deleted, then created again" into
a ``modified`` entry (CONTRACT §6), which a subscription without ``modified`` in its
``change-types`` does not want. :meth:`ChangeFilter.wanted_net` drops it from the net change
as it is taken off the lane; when nothing is left, no callback is formed.

Rules, each field absent = no restriction:

* ``change-types``: the entry lists (``created``, ``modified``, ``deleted``) kept;
* ``kinds``: an entry is kept when its ``GVK`` equals one of the ``{group, version, kind}``;
* ``namespaces``: kept when its ``namespace`` is one of them — so a cluster-scoped resource
  (no namespace) is never in a ``namespaces`` selection;
* ``exclude-namespaces``: dropped when its ``namespace`` is one of them.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.notifier.filter_fields import SubscriptionFilters
from services.notifier.net_delta import Entry, ResourceChanges

Gvk = tuple[str, str, str]


@dataclass(frozen=True)
class ChangeFilter:
    change_types: frozenset[str] | None = None
    kinds: frozenset[Gvk] | None = None
    namespaces: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, filters: SubscriptionFilters) -> ChangeFilter | None:
        """The filter a subscription's fields describe; ``None`` when it keeps everything."""
        change_filter = cls(
            frozenset(filters.change_types) if filters.change_types is not None else None,
            (
                frozenset((k.group, k.version, k.kind) for k in filters.kinds)
                if filters.kinds is not None
                else None
            ),
            frozenset(filters.namespaces) if filters.namespaces is not None else None,
            frozenset(filters.exclude_namespaces or ()),
        )
        return None if change_filter == cls() else change_filter

    def keeps(self, entry: Entry) -> bool:
        """Whether the entry's resource is selected (kinds and namespaces)."""
        if self.kinds is not None:
            gvk = entry.get("GVK") or {}
            identity = (gvk.get("Group", ""), gvk.get("Version", ""), gvk.get("Kind", ""))
            if identity not in self.kinds:
                return False
        namespace = entry.get("namespace") or ""
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return namespace not in self.excluded

    def wants(self, change_type: str) -> bool:
        return self.change_types is None or change_type in self.change_types

    def select(self, changes: ResourceChanges) -> ResourceChanges:
        """The part of one delta the subscription is told of."""
        return ResourceChanges(
            self._entries("created", changes.created),
            self._entries("deleted", changes.deleted),
            self._entries("modified", changes.modified),
        )

    def wanted_net(self, changes: ResourceChanges) -> ResourceChanges:
        """A net change with the change types not wanted left out (see the module docstring)."""
        return ResourceChanges(
            changes.created if self.wants("created") else (),
            changes.deleted if self.wants("deleted") else (),
            changes.modified if self.wants("modified") else (),
        )

    def _entries(self, change_type: str, entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
        if not self.wants(change_type):
            return ()
        return tuple(entry for entry in entries if self.keeps(entry))
