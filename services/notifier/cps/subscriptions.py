"""Which anchors of a dataspace get CPS delta events: the subscribe rule (CONTRACT §4, §7).

A dataspace's subscription is one of two shapes, and every command moves between them by a
fixed rule so that any sequence of commands has one obvious outcome:

* **listed** — exactly the anchors in ``anchors`` are subscribed;
* **all** — every anchor of the dataspace is subscribed, including anchors (instances) that
  appear later, *except* those in ``excluded``.

The rule, with ``A`` the command's anchors (empty or absent means "all anchors"):

=========================  ===============================  ================================
command                    state is *listed*                state is *all*
=========================  ===============================  ================================
subscribe, ``A`` given     ``anchors |= A``                 ``excluded -= A`` (re-included)
subscribe, ``A`` empty     becomes *all*, nothing excluded  nothing excluded any more
unsubscribe, ``A`` given   ``anchors -= A``                 ``excluded |= A``
unsubscribe, ``A`` empty   nothing subscribed               nothing subscribed
=========================  ===============================  ================================

So subscribing named anchors *adds* them (it never narrows an "all" subscription),
unsubscribing named anchors while "all" is on removes just those and keeps every other
anchor — present or future — subscribed, and unsubscribing with no anchors ends the
dataspace's subscription entirely. A state that subscribes nothing is *empty*: it is stored
as a tombstone (null value) so the compacted topic forgets the dataspace.

Persistence (CONTRACT §3): the subscriptions topic holds, under key ``cps/<dataspace>``::

    {"kind": "cps-delta-notification", "dataspace": "ds1", "all-anchors": true,
     "anchors": [], "excluded-anchors": ["inst-9"]}

with both lists sorted, so equal states encode to equal bytes. ``"kind"`` tells this value
apart from a callback subscription's state on the same topic.

Baselines (CONTRACT §4, as for callbacks): an anchor hears only of changes observed after its
dataspace subscribed it. Commands applied with ``at_ms`` (the command record's timestamp)
stamp it: ``"all-since-ms"`` when "all" began, ``"anchors-since-ms"`` per anchor subscribed by
name (listed, or re-included into "all" after an exclusion). An anchor keeps its stamp while it
stays subscribed, so widening a list to "all" does not move the baseline of the anchors
already listed. :func:`subscribed_since` gives an anchor's baseline; the notifier also uses it
as the identity of the anchor's CPS lane — a changed baseline means the anchor was
unsubscribed and subscribed again, and its lane starts afresh. Both fields are omitted when
absent (states written without stamps mean "baseline 0": every change counts).

Pure: no I/O. The notifier validates the command (dataspace and anchor names, CONTRACT §4)
before calling :func:`apply_command`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SUBSCRIBE = "subscribe-delta-notification"
UNSUBSCRIBE = "unsubscribe-delta-notification"
CpsAction = Literal["subscribe-delta-notification", "unsubscribe-delta-notification"]

KEY_PREFIX = "cps/"
STATE_KIND = "cps-delta-notification"


@dataclass(frozen=True)
class DataspaceSubscription:
    """One dataspace's CPS delta-notification subscription (see the module docstring)."""

    dataspace: str
    all_anchors: bool = False
    anchors: frozenset[str] = field(default_factory=frozenset)
    """Subscribed anchors when not ``all_anchors`` (always empty when it is)."""
    excluded: frozenset[str] = field(default_factory=frozenset)
    """Anchors left out of an ``all_anchors`` subscription (always empty when it is not)."""
    all_since_ms: int | None = None
    """When "all" began (epoch ms), the baseline of anchors without their own stamp."""
    since_ms: Mapping[str, int] = field(default_factory=dict, hash=False)
    """Baselines of anchors subscribed by name (epoch ms); only subscribed anchors appear."""

    @property
    def is_empty(self) -> bool:
        """True when no anchor, present or future, is subscribed."""
        return not self.all_anchors and not self.anchors


def empty(dataspace: str) -> DataspaceSubscription:
    return DataspaceSubscription(dataspace)


def subscribe(
    state: DataspaceSubscription, anchors: Iterable[str], at_ms: int | None = None
) -> DataspaceSubscription:
    """Subscribe ``anchors`` (none: all); anchors newly subscribed get baseline ``at_ms``."""
    named = frozenset(anchors)
    since = dict(state.since_ms)
    if not named:
        if state.all_anchors:
            # Excluded anchors come back now; everyone else keeps their baseline.
            since.update(_stamps(state.excluded, at_ms))
            return replace(state, excluded=frozenset(), since_ms=since)
        return DataspaceSubscription(
            state.dataspace, all_anchors=True, all_since_ms=at_ms, since_ms=since
        )
    if state.all_anchors:
        since.update(_stamps(named & state.excluded, at_ms))
        return replace(state, excluded=state.excluded - named, since_ms=since)
    since.update(_stamps(named - state.anchors, at_ms))
    return replace(state, anchors=state.anchors | named, since_ms=since)


def unsubscribe(state: DataspaceSubscription, anchors: Iterable[str]) -> DataspaceSubscription:
    named = frozenset(anchors)
    if not named:
        return empty(state.dataspace)
    since = {anchor: at for anchor, at in state.since_ms.items() if anchor not in named}
    if state.all_anchors:
        return replace(state, excluded=state.excluded | named, since_ms=since)
    return replace(state, anchors=state.anchors - named, since_ms=since)


def _stamps(anchors: Iterable[str], at_ms: int | None) -> dict[str, int]:
    return {} if at_ms is None else dict.fromkeys(anchors, at_ms)


def apply_command(
    state: DataspaceSubscription | None,
    dataspace: str,
    action: CpsAction,
    anchors: Iterable[str] | None,
    at_ms: int | None = None,
) -> DataspaceSubscription:
    """The state after one (already validated) subscribe/unsubscribe command.

    ``at_ms``: the command's record timestamp, the baseline of anchors it subscribes.
    """
    current = state if state is not None else empty(dataspace)
    if action == SUBSCRIBE:
        return subscribe(current, anchors or (), at_ms)
    return unsubscribe(current, anchors or ())


def is_subscribed(state: DataspaceSubscription | None, anchor: str) -> bool:
    if state is None:
        return False
    if state.all_anchors:
        return anchor not in state.excluded
    return anchor in state.anchors


def subscribed_since(state: DataspaceSubscription | None, anchor: str) -> int | None:
    """The anchor's baseline (epoch ms; 0 when unstamped), or None when not subscribed."""
    if state is None or not is_subscribed(state, anchor):
        return None
    stamp = state.since_ms.get(anchor)
    if stamp is None:
        stamp = state.all_since_ms if state.all_anchors else None
    return stamp or 0


def subscribed_dataspaces(states: Mapping[str, DataspaceSubscription], anchor: str) -> list[str]:
    """Every dataspace (sorted) that wants CPS events for ``anchor``."""
    return sorted(name for name, state in states.items() if is_subscribed(state, anchor))


def state_key(dataspace: str) -> str:
    """Key of the dataspace's state on the subscriptions topic: ``cps/<dataspace>``."""
    return f"{KEY_PREFIX}{dataspace}"


def dataspace_of_key(key: str) -> str | None:
    """The dataspace a ``cps/<dataspace>`` key names, or None for any other key."""
    if key.startswith(KEY_PREFIX) and len(key) > len(KEY_PREFIX):
        return key[len(KEY_PREFIX) :]
    return None


class CpsStateDecodeError(ValueError):
    """A subscriptions-topic value under a ``cps/`` key that is not a CPS subscription state."""


class _StateDocument(BaseModel):
    """The JSON value on the subscriptions topic (the boundary shape)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    kind: Literal["cps-delta-notification"]
    dataspace: str = Field(min_length=1)
    all_anchors: bool = Field(alias="all-anchors")
    anchors: list[str] = Field(default_factory=list)
    excluded_anchors: list[str] = Field(default_factory=list, alias="excluded-anchors")
    all_since_ms: int | None = Field(None, alias="all-since-ms")
    anchors_since_ms: dict[str, int] = Field(default_factory=dict, alias="anchors-since-ms")


def encode_state(state: DataspaceSubscription) -> bytes | None:
    """The topic value for ``state``: JSON, or None (a tombstone) when it subscribes nothing."""
    if state.is_empty:
        return None
    document = {
        "kind": STATE_KIND,
        "dataspace": state.dataspace,
        "all-anchors": state.all_anchors,
        "anchors": sorted(state.anchors),
        "excluded-anchors": sorted(state.excluded),
    }
    if state.all_since_ms is not None:
        document["all-since-ms"] = state.all_since_ms
    if state.since_ms:
        document["anchors-since-ms"] = dict(sorted(state.since_ms.items()))
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def decode_state(key: str, value: bytes | None) -> DataspaceSubscription | None:
    """The state a ``cps/<dataspace>`` record holds; None for a tombstone.

    Raises :class:`CpsStateDecodeError` for a value that is not a state of that dataspace,
    so a restoring notifier can log and skip it.
    """
    dataspace = dataspace_of_key(key)
    if dataspace is None:
        raise CpsStateDecodeError(f"{key!r} is not a cps/<dataspace> key")
    if value is None:
        return None
    try:
        document = _StateDocument.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        raise CpsStateDecodeError(f"{key}: {where}: {first['msg']}") from None
    if document.dataspace != dataspace:
        raise CpsStateDecodeError(
            f"{key}: value names dataspace {document.dataspace!r}, key names {dataspace!r}"
        )
    if document.all_anchors:
        excluded = frozenset(document.excluded_anchors)
        since = {a: at for a, at in document.anchors_since_ms.items() if a not in excluded}
        return DataspaceSubscription(
            dataspace,
            all_anchors=True,
            excluded=excluded,
            all_since_ms=document.all_since_ms,
            since_ms=since,
        )
    anchors = frozenset(document.anchors)
    since = {a: at for a, at in document.anchors_since_ms.items() if a in anchors}
    return DataspaceSubscription(dataspace, anchors=anchors, since_ms=since)
