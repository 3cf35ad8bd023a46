"""One net delta of an anchor → the CPS CloudEvent(s) of CONTRACT §7, in either format.

The notifier's coalescing engine decides *when* an anchor's net delta is due and *what* it is;
this module only says how CPS consumers see it, so the mapping can be tested exhaustively
without Kafka and the Kafka edge (:mod:`services.notifier.cps.event_writer`) stays trivial.

Input: an :class:`AnchorDelta` — dataspace, anchor, the net :class:`ResourceChange` list (for
a modification both the object the subscriber was last told of and the new one), the observed
time, a deterministic id of the notification, and whether this is the anchor's first delta and
whether its last resource goes with it. §5 deltas carry only the new object of a modification,
so :class:`AnchorView` — the per-lane memory of what a dataspace was last told — supplies the
old objects and those two facts from the engine's net ``resource-changes``.

Output: :class:`CpsEvent` values — key ``<dataspace>:<anchor>`` and the CloudEvent attributes
— that :func:`deltawatch.cloud_events.new_event` / :func:`~deltawatch.cloud_events.to_kafka`
turn into a binary-mode record.

* ``delta`` format: one event for the whole net delta. Changes are listed ADD (created), then
  DELETE (deleted), then UPDATE (modified), each group in resource-key order, so the same
  net delta always gives the same bytes. UPDATE's payload is the RFC 7386 merge patch from the
  old object to the new. ``operation``: DELETE when the anchor's last resource goes, else
  CREATE for its first delta, else UPDATE (:func:`delta_operation`).
* ``cps`` format: one event per changed resource, in the same order, actions create / remove /
  replace; ``sourceData`` / ``targetData`` are JSON *strings*, on replace holding only the
  changed leaves (:func:`services.notifier.cps.merge_patch.changed_leaves`).

A modification whose old and new objects are equal is no change and yields nothing; a delta
with no changes left yields no event. A modification whose old object the engine does not
know (``old=None``) is mapped as a change from ``{}``: the UPDATE payload and ``targetData``
are the whole new object and ``sourceData`` is ``"{}"``.

Event ids are UUIDs (as CPS's are) derived from the notification id, the dataspace, the anchor
and — in the ``cps`` format — the resource xpath, so re-processing the same input after a crash
gives the same ids and consumers can deduplicate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deltawatch.cloud_events import KafkaRecord, new_event, to_kafka
from deltawatch.resource_identity import ResourceKey
from services.notifier.cps.merge_patch import changed_leaves, json_equal, merge_patch_diff
from services.notifier.cps.xpath import ROOT_XPATH, resource_xpath

EventFormat = Literal["delta", "cps"]
ChangeAction = Literal["created", "deleted", "modified"]
Operation = Literal["CREATE", "UPDATE", "DELETE"]

CPS_DELTA_SOURCE = "urn:cps:org.onap.cps"
CPS_DELTA_TYPE = "org.onap.cps.data-updated-delta-event"
CPS_DELTA_DATASCHEMA = "urn:cps:org.onap.cps:data-updated-event-schema:v1"

CPS_SOURCE = "CPS"
CPS_TYPE = "org.onap.cps.events.model.CpsDataUpdatedEvent"
CPS_DATASCHEMA = "urn:cps:org.onap.cps.events.model.CpsDataUpdatedEvent:1.0.0"

_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:deltawatch:cps-events")
_ORDER: dict[ChangeAction, int] = {"created": 0, "deleted": 1, "modified": 2}
_DELTA_ACTION: dict[ChangeAction, str] = {
    "created": "ADD",
    "deleted": "DELETE",
    "modified": "UPDATE",
}
_CPS_ACTION: dict[ChangeAction, str] = {
    "created": "create",
    "deleted": "remove",
    "modified": "replace",
}


@dataclass(frozen=True)
class ResourceChange:
    """One resource's part of a net delta.

    ``created`` carries ``new``, ``deleted`` carries ``old`` (the last known object),
    ``modified`` carries ``new`` and, when known, ``old`` — the object the subscriber was last
    told of. Objects are whole Kubernetes objects (a §5 entry's ``status``).
    """

    action: ChangeAction
    key: ResourceKey
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.action in ("created", "modified") and self.new is None:
            raise ValueError(f"a {self.action} change needs the new object")
        if self.action == "deleted" and self.old is None:
            raise ValueError("a deleted change needs the last known object")

    @property
    def is_noop(self) -> bool:
        return self.action == "modified" and self.old is not None and json_equal(self.old, self.new)


@dataclass(frozen=True)
class AnchorDelta:
    """An anchor's net delta, as the notifier's coalescing engine hands it over."""

    dataspace: str
    anchor: str
    changes: Sequence[ResourceChange]
    observed_at: datetime
    """When the change was observed (timezone-aware); ``observedTimestamp`` and ``ce_time``."""
    notification_id: str
    """Deterministic, unique per (dataspace, anchor) notification: seeds the event ids."""
    first_delta: bool = False
    anchor_gone: bool = False


@dataclass(frozen=True)
class CpsEvent:
    """A CPS CloudEvent ready for :func:`new_event` / :func:`to_kafka`, with its Kafka key."""

    key: str
    event_id: str
    event_type: str
    source: str
    dataschema: str
    time: datetime
    data: dict[str, Any]
    extensions: dict[str, str] = field(default_factory=dict)

    def cloud_event(self) -> CloudEvent:
        return new_event(
            event_type=self.event_type,
            source=self.source,
            event_id=self.event_id,
            data=self.data,
            time=self.time,
            dataschema=self.dataschema,
            extensions=dict(self.extensions),
        )

    def record(self) -> KafkaRecord:
        return to_kafka(self.cloud_event(), self.key)


def observed_timestamp(moment: datetime) -> str:
    """CPS's ``yyyy-MM-dd'T'HH:mm:ss.SSSZ`` in UTC: ``2026-11-24T10:15:30.123+0000``."""
    if moment.tzinfo is None:
        raise ValueError("observed time must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def delta_operation(*, first_delta: bool, anchor_gone: bool) -> Operation:
    """The ``delta`` format's ``operation``: DELETE wins over CREATE, UPDATE otherwise."""
    if anchor_gone:
        return "DELETE"
    return "CREATE" if first_delta else "UPDATE"


def anchor_key(dataspace: str, anchor: str) -> str:
    """Kafka key (and ``ce_correlationid``) of an anchor's CPS events, as CPS keys them."""
    return f"{dataspace}:{anchor}"


def cps_events(delta: AnchorDelta, *, event_format: EventFormat, schema_set: str) -> list[CpsEvent]:
    """The CPS events for one net delta: one (``delta``) or one per resource (``cps``)."""
    changes = sorted(
        (change for change in delta.changes if not change.is_noop),
        key=lambda change: (_ORDER[change.action], change.key),
    )
    if not changes:
        return []
    if event_format == "delta":
        return [_delta_event(delta, changes, schema_set)]
    return [_cps_event(delta, change, schema_set) for change in changes]


def _event_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


def _delta_event(
    delta: AnchorDelta, changes: Sequence[ResourceChange], schema_set: str
) -> CpsEvent:
    entries = [
        {
            "action": _DELTA_ACTION[change.action],
            "xpath": resource_xpath(change.key),
            "payload": _delta_payload(change),
        }
        for change in changes
    ]
    data = {
        "observedTimestamp": observed_timestamp(delta.observed_at),
        "dataspaceName": delta.dataspace,
        "schemaSetName": schema_set,
        "anchorName": delta.anchor,
        "operation": delta_operation(first_delta=delta.first_delta, anchor_gone=delta.anchor_gone),
        "xpath": ROOT_XPATH,
        "data": entries,
    }
    return CpsEvent(
        key=anchor_key(delta.dataspace, delta.anchor),
        event_id=_event_id("delta", delta.dataspace, delta.anchor, delta.notification_id),
        event_type=CPS_DELTA_TYPE,
        source=CPS_DELTA_SOURCE,
        dataschema=CPS_DELTA_DATASCHEMA,
        time=delta.observed_at,
        data=data,
    )


def _delta_payload(change: ResourceChange) -> Any:
    if change.action == "created":
        return change.new
    if change.action == "deleted":
        return change.old
    return merge_patch_diff(change.old if change.old is not None else {}, change.new)


def _cps_event(delta: AnchorDelta, change: ResourceChange, schema_set: str) -> CpsEvent:
    xpath = resource_xpath(change.key)
    cloud_event_data: dict[str, str] = {}
    if change.action == "created":
        cloud_event_data["targetData"] = _json_text(change.new)
    elif change.action == "deleted":
        cloud_event_data["sourceData"] = _json_text(change.old)
    else:
        source, target = changed_leaves(change.old if change.old is not None else {}, change.new)
        cloud_event_data["sourceData"] = _json_text(source)
        cloud_event_data["targetData"] = _json_text(target)
    key = anchor_key(delta.dataspace, delta.anchor)
    data = {
        "eventPayload": {
            "observedTimestamp": observed_timestamp(delta.observed_at),
            "dataspaceName": delta.dataspace,
            "schemaSetName": schema_set,
            "anchorName": delta.anchor,
            "action": _CPS_ACTION[change.action],
            "xpath": xpath,
            "cloudEventData": cloud_event_data,
        }
    }
    return CpsEvent(
        key=key,
        event_id=_event_id("cps", delta.dataspace, delta.anchor, delta.notification_id, xpath),
        event_type=CPS_TYPE,
        source=CPS_SOURCE,
        dataschema=CPS_DATASCHEMA,
        time=delta.observed_at,
        data=data,
        extensions={"correlationid": key},
    )


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _GVK(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    Group: str = ""
    Version: str = Field(min_length=1)
    Kind: str = Field(min_length=1)


class ResourceStatusEntry(BaseModel):
    """A CONTRACT §5 ``resource-changes`` entry: ``{"name","namespace","cluster","GVK","status"}``.

    The notifier gives every entry its cluster before it gets here (see ``net_delta``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    namespace: str = ""
    cluster: str = Field(min_length=1)
    GVK: _GVK
    status: dict[str, Any]

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(
            cluster=self.cluster,
            group=self.GVK.Group,
            version=self.GVK.Version,
            kind=self.GVK.Kind,
            namespace=self.namespace,
            name=self.name,
        )


@dataclass(frozen=True)
class ViewStep:
    """What :meth:`AnchorView.advance` made of one net delta."""

    changes: list[ResourceChange]
    first_delta: bool
    anchor_gone: bool
    rejected: list[str]
    """One message per entry that is not a §5 ResourceStatus (left out, logged by the caller)."""


@dataclass
class AnchorView:
    """What one dataspace was last told about one anchor: resource key → object.

    CONTRACT §5 deltas carry only the *new* object of a modification, and the coalescing engine
    does not keep the told one, yet §7 needs the old object (merge patch, changed leaves) and
    needs to know whether the anchor is appearing or vanishing. This is that memory, one per
    ``<dataspace>:<anchor>`` lane, advanced once per published net delta:

    * a modification is paired with the object last told, or ``None`` when this dataspace was
      never told of the resource (it existed before the subscription — CONTRACT §4 baseline);
    * ``first_delta``: the view held nothing before and still holds something after — the
      anchor appears, or is first heard of, for this dataspace (CREATE);
    * ``anchor_gone``: the delta deletes something and the view holds nothing after (DELETE).
      The view is then empty again, so a reappearing anchor is a CREATE once more.

    Memory: the last told objects of every resource of every subscribed anchor, per dataspace.
    Persist it with :meth:`to_json` / :meth:`from_json` next to the lane it belongs to.
    """

    objects: dict[ResourceKey, dict[str, Any]] = field(default_factory=dict)

    def advance(self, resource_changes: Mapping[str, Sequence[Mapping[str, Any]]]) -> ViewStep:
        """Fold a §5 ``resource-changes`` net delta in; return the changes to publish."""
        was_empty = not self.objects
        changes: list[ResourceChange] = []
        rejected: list[str] = []
        deleted_any = False
        for action in ("created", "deleted", "modified"):
            for entry in resource_changes.get(action) or ():
                try:
                    parsed = ResourceStatusEntry.model_validate(entry)
                except ValidationError as exc:
                    rejected.append(f"{action} entry: {_first_error(exc)}")
                    continue
                key = parsed.key
                if action == "created":
                    changes.append(ResourceChange("created", key, new=parsed.status))
                    self.objects[key] = parsed.status
                elif action == "deleted":
                    changes.append(ResourceChange("deleted", key, old=parsed.status))
                    self.objects.pop(key, None)
                    deleted_any = True
                else:
                    old = self.objects.get(key)
                    changes.append(ResourceChange("modified", key, old=old, new=parsed.status))
                    self.objects[key] = parsed.status
        gone = deleted_any and not self.objects
        first = was_empty and bool(self.objects)
        return ViewStep(changes, first_delta=first, anchor_gone=gone, rejected=rejected)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "cluster": key.cluster,
                "group": key.group,
                "version": key.version,
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
                "object": obj,
            }
            for key, obj in sorted(self.objects.items())
        ]

    @classmethod
    def from_json(cls, items: Sequence[Mapping[str, Any]], legacy_cluster: str) -> AnchorView:
        """Read :meth:`to_json`; items persisted before clusters belong to ``legacy_cluster``."""
        return cls(
            {
                ResourceKey(
                    cluster=str(item.get("cluster", legacy_cluster)),
                    group=str(item["group"]),
                    version=str(item["version"]),
                    kind=str(item["kind"]),
                    namespace=str(item["namespace"]),
                    name=str(item["name"]),
                ): dict(item["object"])
                for item in items
            }
        )


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "entry"
    return f"{where}: {first['msg']}"


def change_from_entry(
    action: ChangeAction,
    entry: Mapping[str, Any],
    old_status: Mapping[str, Any] | None = None,
) -> ResourceChange:
    """A :class:`ResourceChange` from a §5 entry (and, for ``modified``, the old object).

    Raises pydantic's ``ValidationError`` for an entry that is not a §5 ResourceStatus.
    """
    parsed = ResourceStatusEntry.model_validate(entry)
    if action == "created":
        return ResourceChange("created", parsed.key, new=parsed.status)
    if action == "deleted":
        return ResourceChange("deleted", parsed.key, old=parsed.status)
    return ResourceChange(
        "modified",
        parsed.key,
        old=dict(old_status) if old_status is not None else None,
        new=parsed.status,
    )
