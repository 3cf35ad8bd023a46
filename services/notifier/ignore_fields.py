"""``ignore-fields`` (CONTRACT §4): changes that touch only these paths are not modifications.

A delta's ``modified`` entry carries only the new object, so to know *what* changed the
subscription must remember what it saw before. Storing every object per subscription would
cost megabytes; a fingerprint (hash of the object with the ignored paths removed) per
resource costs a few dozen bytes and answers the only question asked: "is this a change once
the ignored paths are left out?". Fingerprints exist only for subscriptions that set
``ignore-fields``, and are persisted with the subscription's outbox record.

Rule: a ``modified`` entry whose fingerprint equals the last one seen for that resource is
dropped. A resource not seen since the subscription was created (or since a restart of a
subscription whose record predates this feature) has no fingerprint, so its first
modification always counts. Created and deleted entries always count. Paths are dotted,
relative to the Kubernetes object (``metadata.annotations``, ``status.conditions`` …); a path
that names nothing is harmless.

Pure: no I/O.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.notifier.net_delta import Entry, ResourceChanges, resource_key


def strip(document: Any, paths: Sequence[str]) -> Any:
    """A copy of ``document`` without the dotted ``paths``."""
    stripped = copy.deepcopy(document)
    for path in paths:
        parts = path.split(".")
        node = stripped
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return stripped


def fingerprint(entry: Entry, paths: Sequence[str]) -> str:
    canonical = json.dumps(strip(entry.get("status"), paths), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()


@dataclass
class IgnoreFieldsFilter:
    paths: tuple[str, ...]
    seen: dict[str, str] = field(default_factory=dict)
    """Resource key → fingerprint of the last object seen."""

    def apply(self, changes: ResourceChanges) -> ResourceChanges:
        for entry in changes.created:
            self.seen[resource_key(entry)] = fingerprint(entry, self.paths)
        for entry in changes.deleted:
            self.seen.pop(resource_key(entry), None)
        modified = []
        for entry in changes.modified:
            key = resource_key(entry)
            new = fingerprint(entry, self.paths)
            if self.seen.get(key) != new:
                modified.append(entry)
            self.seen[key] = new
        return ResourceChanges(changes.created, changes.deleted, tuple(modified))
