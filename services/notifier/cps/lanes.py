"""Which CPS lanes exist, and deciding which of them a delta feeds (CONTRACT §4, §7).

A CPS lane is one ``(dataspace, anchor)`` pair: a lane of the notifier's
:class:`~services.notifier.coalescing_queue.CoalescingQueue` (throttled with
``DELTAWATCH_CPS_MIN_NOTIFY_INTERVAL``) plus its :class:`AnchorView` — what that dataspace was
last told of that anchor. It lives where the anchor's deltas are consumed: on the deltas
partition of the instance, so its state is committed together with those deltas' offsets.

Lane identity is ``(dataspace, anchor, since)``, ``since`` being the anchor's baseline in that
dataspace (:func:`cps_subscriptions.subscribed_since`). The rules, applied whenever a delta of
the anchor arrives and again when a lane's notification is due:

* a dataspace that subscribes the anchor gets a lane, created at the first delta observed at or
  after the baseline (earlier changes are the state the dataspace starts from: never told);
* a lane whose dataspace no longer subscribes the anchor is dropped, pending change and all
  (an unsubscribed anchor never produces an event);
* a lane whose baseline changed (unsubscribed, then subscribed again) starts afresh: empty view
  (its next delta is a CREATE again), notification numbers from 1.

Notification ids are ``<since>.<number>``: the queue numbers a lane's notifications 1, 2, 3 …
and restarts when a lane is re-created, so the baseline tells the lifetimes apart.

Queue targets (and outbox-changelog keys) are ``cps/<dataspace>/<anchor>``: neither name may
contain ``/`` (CONTRACT §4), so the key names the pair without ambiguity — unlike the CPS
topic's ``<dataspace>:<anchor>``, as ``:`` is allowed in names — and never equals a callback
subscription's ``<instance-id>/<name>`` (one ``/``) nor a dataspace state's ``cps/<dataspace>``.

Pure: no I/O, no clock; the worker persists what :class:`Routed` names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from services.notifier.coalescing_queue import CoalescingQueue
from services.notifier.cps.events import AnchorView
from services.notifier.cps.subscriptions import DataspaceSubscription, subscribed_since
from services.notifier.net_delta import ResourceChanges

LANE_PREFIX = "cps/"


def lane_target(dataspace: str, anchor: str) -> str:
    """``cps/<dataspace>/<anchor>``: the lane's queue target and outbox key."""
    return f"{LANE_PREFIX}{dataspace}/{anchor}"


def is_lane_target(key: str) -> bool:
    return key.startswith(LANE_PREFIX) and key.count("/") == 2


@dataclass
class CpsLane:
    dataspace: str
    anchor: str
    since_ms: int
    """The anchor's baseline in the dataspace when the lane was created: its identity."""
    partition: int
    """The deltas partition of the anchor: where the lane's state is written."""
    view: AnchorView = field(default_factory=AnchorView)

    @property
    def target(self) -> str:
        return lane_target(self.dataspace, self.anchor)

    def notification_id(self, number: int) -> str:
        return f"{self.since_ms}.{number}"


@dataclass(frozen=True)
class Routed:
    """What one delta did to the CPS lanes of its anchor."""

    fed: list[str] = field(default_factory=list)
    """Targets whose pending change grew (their state must be written)."""
    dropped: list[str] = field(default_factory=list)
    """Targets removed for good (their state must be deleted)."""
    subscribed: bool = False
    """Some dataspace subscribes the anchor (whether or not the delta predates its baseline)."""


class CpsLanes:
    """Every CPS lane of this notifier, over the queue it shares with callback subscriptions."""

    def __init__(self, queue: CoalescingQueue, interval_s: float) -> None:
        self.queue = queue
        self.interval_s = interval_s
        self.lanes: dict[str, CpsLane] = {}
        self._by_anchor: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.lanes)

    def route(
        self,
        anchor: str,
        partition: int,
        changes: ResourceChanges,
        observed_at: float,
        states: Mapping[str, DataspaceSubscription],
    ) -> Routed:
        """Feed one delta of ``anchor`` (observed at epoch s ``observed_at``) to its lanes."""
        wanted: dict[str, int] = {}
        for dataspace, state in states.items():
            since = subscribed_since(state, anchor)
            if since is not None:
                wanted[dataspace] = since
        dropped = [
            target
            for target in sorted(self._by_anchor.get(anchor, ()))
            if wanted.get(self.lanes[target].dataspace) != self.lanes[target].since_ms
        ]
        for target in dropped:
            self.remove(target)
        fed: list[str] = []
        for dataspace, since in sorted(wanted.items()):
            if observed_at * 1000 < since:
                continue  # the baseline: this change predates the subscription
            target = lane_target(dataspace, anchor)
            if target not in self.lanes:
                self._add(CpsLane(dataspace, anchor, since, partition))
                self.queue.configure(target, self.interval_s)
            self.queue.add(target, changes, observed_at)
            fed.append(target)
        return Routed(fed, [t for t in dropped if t not in fed], bool(wanted))

    def still_wanted(self, target: str, states: Mapping[str, DataspaceSubscription]) -> bool:
        """Whether the lane's notification may go out: same dataspace, same baseline."""
        lane = self.lanes.get(target)
        if lane is None:
            return False
        return subscribed_since(states.get(lane.dataspace), lane.anchor) == lane.since_ms

    def remove(self, target: str) -> None:
        lane = self.lanes.pop(target, None)
        self.queue.remove(target)
        if lane is None:
            return
        targets = self._by_anchor.get(lane.anchor, set())
        targets.discard(target)
        if not targets:
            self._by_anchor.pop(lane.anchor, None)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the lanes of revoked partitions (their state stays in Kafka)."""
        revoked = set(partitions)
        for target in [t for t, lane in self.lanes.items() if lane.partition in revoked]:
            self.remove(target)

    def restore(self, lane: CpsLane, snapshot: Mapping[str, object]) -> None:
        """A lane read back from the outbox changelog (never busy: CPS events go out at once)."""
        self._add(lane)
        self.queue.restore(lane.target, self.interval_s, dict(snapshot), busy=False)

    def _add(self, lane: CpsLane) -> None:
        self.lanes[lane.target] = lane
        self._by_anchor.setdefault(lane.anchor, set()).add(lane.target)
