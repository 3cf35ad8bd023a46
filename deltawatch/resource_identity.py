"""How the three workers name a Kubernetes object and what happened to it: one definition each.

The watcher writes these names into every resource event, the differ keys its snapshot and
its changelog by them and the notifier keys CPS xpaths and coalescing by them. Each of them
had its own copy, and copies drift (one interned its strings, one was ordered, one was a
``Literal``); a name that means the same thing on both sides of a topic is defined here, once,
and every worker imports it. Nothing here does I/O or knows about Kafka, so the module is a
leaf that any layer may import.

* :class:`GroupVersionKind` — a kind, spelt ``group/version/Kind`` (``v1/Kind`` for the core
  group) in ``DELTAWATCH_RESOURCE_TYPES`` and in logs and metric labels.
* :class:`ResourceKey` — CONTRACT's resource key ``(cluster, group, version, kind, namespace,
  name)``.
  A tuple on purpose: the differ holds hundreds of thousands of them and writes them, field by
  field in this order, into its changelog keys; the order is part of that format.
* :class:`EventType` — the ``type`` symbols of ``schemas/resource-event.avsc``; a ``str``
  enum, so a value is its own symbol on the wire, in JSON and in metric labels.
* :func:`without_managed_fields` — what "the object" means in an event and in a delta: the
  object minus ``metadata.managedFields`` (large, rewritten on every write, never a change).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "EventType",
    "GroupVersionKind",
    "ResourceKey",
    "api_version",
    "upgrade_path",
    "without_managed_fields",
]


def api_version(group: str, version: str) -> str:
    """``group/version``, or ``version`` alone for the core group, as an object's apiVersion."""
    return f"{group}/{version}" if group else version


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    """A Kubernetes kind; ``group`` is ``""`` for the core group."""

    group: str
    version: str
    kind: str

    @classmethod
    def parse(cls, text: str) -> GroupVersionKind:
        """``group/version/Kind`` or ``v1/Kind``; raises ``ValueError`` for anything else."""
        parts = text.strip().split("/")
        if len(parts) == 2 and all(parts):
            return cls(group="", version=parts[0], kind=parts[1])
        if len(parts) == 3 and all(parts):
            return cls(group=parts[0], version=parts[1], kind=parts[2])
        raise ValueError(f"{text!r} is not group/version/Kind or v1/Kind")

    @property
    def api_version(self) -> str:
        return api_version(self.group, self.version)

    def __str__(self) -> str:
        return f"{self.api_version}/{self.kind}"


class ResourceKey(NamedTuple):
    """(cluster, group, version, kind, namespace, name); namespace ``""`` when cluster-scoped.

    The cluster comes first (CONTRACT §10): the same namespace and name in two clusters are two
    resources, and keys sort cluster by cluster."""

    cluster: str
    group: str
    version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(
        cls, cluster: str, group: str, version: str, kind: str, namespace: str, name: str
    ) -> ResourceKey:
        """A key whose strings but the name are interned: few distinct values, many keys (a
        namespace of a thousand Pods is one string, not a thousand)."""
        intern = sys.intern
        return cls(
            intern(cluster), intern(group), intern(version), intern(kind), intern(namespace), name
        )

    @property
    def api_version(self) -> str:
        return api_version(self.group, self.version)

    @property
    def gvk(self) -> GroupVersionKind:
        return GroupVersionKind(self.group, self.version, self.kind)

    @property
    def path(self) -> str:
        """``cluster/group/version/kind/namespace/name``: the key as one string.

        The notifier persists keys in this spelling (its ``ignore-fields-seen`` state); the
        previous release wrote them without the cluster (see :func:`upgrade_path`)."""
        return "/".join(self)


def upgrade_path(path: str, legacy_cluster: str) -> str:
    """A persisted :attr:`ResourceKey.path`, from a release without clusters made current.

    Keys of that release have five parts; they belong to the cluster the pipeline then watched
    (its ``DELTAWATCH_CLUSTER``), and a name never contains ``/``, so the count tells them apart.
    """
    return f"{legacy_cluster}/{path}" if path.count("/") == 4 else path


class EventType(StrEnum):
    """One resource event's ``type`` (``schemas/resource-event.avsc``, ``ResourceEventType``)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    LISTED = "LISTED"
    LIST_BEGIN = "LIST_BEGIN"
    LIST_END = "LIST_END"


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without ``metadata.managedFields``: a shallow copy if it had any, else ``obj``.

    The caller's object is never modified, and an object without the field is returned as is
    (callers rely on ``is`` to know that its received JSON text is still exact)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
