"""Which kinds the watcher must watch: the configured defaults plus subscriptions' extras.

A subscription may ask for ``extra-resource-types`` (CONTRACT §4) beyond
``DELTAWATCH_RESOURCE_TYPES``. The subscriptions topic is compacted and keyed by
``<instance-id>/<subscription-name>``, so the current set of extras is a pure function of the
latest value per key: this module keeps that table and answers "which watch targets should
run now"; the Kafka reading and the starting and stopping of threads live elsewhere. A value
that is not a usable subscription never stops the watcher: it only contributes no kinds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deltawatch.resource_identity import GroupVersionKind, api_version


@dataclass(frozen=True, order=True)
class WatchTarget:
    """One list+watch: a kind, in one namespace or (``namespace`` None) in all of them."""

    group: str
    version: str
    kind: str
    namespace: str | None = None

    @classmethod
    def of(cls, gvk: GroupVersionKind, namespace: str | None = None) -> WatchTarget:
        return cls(gvk.group, gvk.version, gvk.kind, namespace)

    @property
    def gvk(self) -> GroupVersionKind:
        return GroupVersionKind(group=self.group, version=self.version, kind=self.kind)

    @property
    def api_version(self) -> str:
        return api_version(self.group, self.version)

    def __str__(self) -> str:
        where = self.namespace if self.namespace is not None else "*"
        return f"{self.api_version}/{self.kind}@{where}"


class InvalidSubscription(ValueError):
    """A subscriptions-topic value the watcher cannot take kinds from."""


def extra_kinds_of(value: bytes) -> frozenset[GroupVersionKind]:
    """The ``extra-resource-types`` of one subscription state value (CONTRACT §4)."""
    try:
        state = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSubscription(f"not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise InvalidSubscription("not a JSON object")
    extras = state.get("extra-resource-types")
    if extras is None:
        return frozenset()
    if not isinstance(extras, list):
        raise InvalidSubscription('"extra-resource-types" is not a list')
    kinds = set()
    for entry in extras:
        if not isinstance(entry, dict):
            raise InvalidSubscription(f"extra resource type {entry!r} is not an object")
        group, version, kind = (entry.get(k) for k in ("group", "version", "kind"))
        if group is None:
            group = ""
        if not (isinstance(group, str) and isinstance(version, str) and isinstance(kind, str)):
            raise InvalidSubscription(f"extra resource type {entry!r} needs string fields")
        if not version or not kind or "/" in group + version + kind:
            raise InvalidSubscription(f"extra resource type {entry!r} is incomplete")
        kinds.add(GroupVersionKind(group=group, version=version, kind=kind))
    return frozenset(kinds)


class SubscriptionKinds:
    """Latest extra kinds per subscription key, as read from the compacted topic."""

    def __init__(self) -> None:
        self._by_key: dict[str, frozenset[GroupVersionKind]] = {}

    def apply(self, key: str, value: bytes | None) -> None:
        """Record the latest value of ``key``; ``None`` (a tombstone) forgets it.

        Raises :class:`InvalidSubscription` for an unusable value, after forgetting the
        key's previous kinds (the subscription as it was is gone either way)."""
        self._by_key.pop(key, None)
        if value is None:
            return
        kinds = extra_kinds_of(value)
        if kinds:
            self._by_key[key] = kinds

    def kinds(self) -> frozenset[GroupVersionKind]:
        found: set[GroupVersionKind] = set()
        for kinds in self._by_key.values():
            found |= kinds
        return frozenset(found)


def desired_targets(
    defaults: Iterable[GroupVersionKind],
    extras: Iterable[GroupVersionKind],
    namespaces: Sequence[str],
) -> frozenset[WatchTarget]:
    """One target per kind, times each listed namespace (or one cluster-wide target)."""
    scopes: Sequence[str | None] = list(namespaces) or [None]
    return frozenset(WatchTarget.of(gvk, ns) for gvk in {*defaults, *extras} for ns in scopes)
