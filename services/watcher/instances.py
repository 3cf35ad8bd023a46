"""Which instance each watched object belongs to, including when its label changes or goes.

The label selector makes the server send only labelled objects, but an object whose label is
*removed* arrives as a DELETED event carrying the new, unlabelled object, and an object whose
label *value* changes arrives as a MODIFIED event for the new instance only. Keyed by the
label alone, the first would have no key and the second would leave the old instance
believing the object still exists. So each watch remembers uid → instance-id (a few dozen
bytes per object) and turns those cases into what each instance must see: a DELETED for the
old instance, an ADDED for the new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from deltawatch.resource_identity import EventType
from services.watcher.records import Obj, instance_label_value


@dataclass(frozen=True)
class Routed:
    """One event for one instance."""

    event_type: EventType
    instance_id: str


class InstanceIndex:
    def __init__(self, label: str) -> None:
        self.label = label
        self._by_uid: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    @staticmethod
    def _uid(obj: Obj) -> str:
        metadata = obj.get("metadata") or {}
        uid = metadata.get("uid")
        if isinstance(uid, str) and uid:
            return uid
        return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"

    def start_list(self) -> None:
        """A relist replaces everything known: the objects listed next are the truth."""
        self._by_uid.clear()

    def listed(self, obj: Obj) -> str | None:
        instance = instance_label_value(obj, self.label)
        if instance is not None:
            self._by_uid[self._uid(obj)] = instance
        return instance

    def watched(self, event_type: EventType, obj: Obj) -> list[Routed]:
        """Route one watch event (ADDED / MODIFIED / DELETED) to the instances concerned."""
        uid = self._uid(obj)
        now = instance_label_value(obj, self.label)
        before = self._by_uid.get(uid)
        if event_type == EventType.DELETED:
            self._by_uid.pop(uid, None)
            owner = before or now
            return [Routed(EventType.DELETED, owner)] if owner else []
        if now is None:  # label gone but the server still matched it: treat as leaving
            self._by_uid.pop(uid, None)
            return [Routed(EventType.DELETED, before)] if before else []
        self._by_uid[uid] = now
        if before is not None and before != now:
            return [Routed(EventType.DELETED, before), Routed(EventType.ADDED, now)]
        return [Routed(event_type, now)]
