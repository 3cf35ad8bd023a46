"""``include-patch`` (CONTRACT §4, §6): each modified entry carries what changed for its reader.

A modified entry carries only the new object, and the coalescing engine
(:mod:`services.notifier.net_delta`) does not keep the object the subscriber was last told of,
so a subscription that asks for patches keeps that memory itself: resource key → the object
(the entry's ``status``) of its last ``created`` or ``modified`` entry in a callback. Only
such subscriptions pay for it, and it is persisted with the subscription's outbox record, in
the same transaction as the callback it describes, so a restart neither loses nor repeats it.

Rules:

* the patch is the RFC 7386 merge patch from the told object to the new one, computed by
  :func:`services.notifier.cps.merge_patch.merge_patch_diff` (the one copy the CPS ``delta``
  format uses too). Because it is computed when the callback is formed, from the net change,
  a throttle window that coalesced several modifications gives one net patch, and applying
  the patches of the callbacks in order to the first object told gives the current object;
* baseline: a resource this subscriber was never told of (it existed before the subscription,
  or before its filters selected it, or before ``include-patch`` was turned on) is patched
  from ``{}``: the patch is the whole new object, as the CPS format does for an unknown old
  object. A reader that applies the patches to "nothing" for unknown resources is thus right;
* "told" means put in a formed callback: a callback later dead-lettered still moved the
  memory on, as its body (frozen with its patches) is what an operator replays;
* a delete forgets the resource, told or filtered out, so memory follows the live resources.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.notifier.cps.merge_patch import merge_patch_diff
from services.notifier.net_delta import Entry, ResourceChanges, resource_key


@dataclass
class ToldObjects:
    objects: dict[str, Any] = field(default_factory=dict)
    """Resource key → the object last told (a created or modified entry's ``status``)."""

    def tell(self, changes: ResourceChanges) -> ResourceChanges:
        """The changes as told, each modified entry with its ``"patch"``; the memory moves on."""
        for entry in changes.created:
            self.objects[resource_key(entry)] = entry.get("status")
        self.forget(changes.deleted)
        modified = []
        for entry in changes.modified:
            key = resource_key(entry)
            new = entry.get("status")
            modified.append({**entry, "patch": merge_patch_diff(self.objects.get(key, {}), new)})
            self.objects[key] = new
        return ResourceChanges(changes.created, changes.deleted, tuple(modified))

    def forget(self, deleted: Iterable[Entry]) -> None:
        for entry in deleted:
            self.objects.pop(resource_key(entry), None)
