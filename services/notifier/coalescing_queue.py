"""Per-target queues that turn a stream of deltas into throttled, net, ordered notifications.

One lane per target (an opaque key: ``<instance-id>/<subscription>`` for callbacks,
``<dataspace>:<anchor>`` for CPS events). A lane holds the pending net change
(:class:`NetDelta`), its throttle window, and whether a notification is out and not yet
finished. The rules of CONTRACT §6 all live here:

* a lane with nothing out and an open window sends its pending change at once (leading edge);
* while one notification is out, new changes coalesce into the next one (per-target order);
* a window that is still closed holds the pending change until it opens;
* a pending change whose net is empty (created then deleted) is dropped silently.

Pure and generic: no I/O, no clock (the caller passes ``now`` in epoch seconds), no
knowledge of HTTP or Kafka, so the CPS publisher reuses it per anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.notifier.net_delta import NetDelta, ResourceChanges
from services.notifier.throttle_window import ThrottleWindow


@dataclass(frozen=True)
class Outgoing:
    """A notification taken off a lane: the net change to tell, once, in order."""

    target: str
    number: int
    """1, 2, 3 … per target: with the target identity, names the notification for ever."""
    changes: ResourceChanges
    observed_at: float | None
    """When the oldest change in it was observed (epoch s), for the latency histogram."""
    delta_at: float | None = None
    """When the oldest delta in it was written (epoch s), for the last hop's histogram."""


@dataclass
class _Lane:
    window: ThrottleWindow
    pending: NetDelta = field(default_factory=NetDelta)
    pending_observed_at: float | None = None
    pending_delta_at: float | None = None
    """Not persisted: a notification formed after a restart does not time the last hop."""
    busy: bool = False
    taken: int = 0


class CoalescingQueue:
    def __init__(self, legacy_cluster: str = "default") -> None:
        self.legacy_cluster = legacy_cluster
        """The cluster of persisted entries written before clusters were part of keys."""
        self._lanes: dict[str, _Lane] = {}
        self._waiting: set[str] = set()
        """Targets with a pending change and nothing out: candidates for :meth:`take_due`."""
        self._held: set[str] = set()
        """Targets with a pending change behind a notification still out."""

    def __contains__(self, target: object) -> bool:
        return target in self._lanes

    def __len__(self) -> int:
        return len(self._lanes)

    def configure(self, target: str, interval_s: float) -> None:
        """Create the lane, or change its interval (an update command)."""
        lane = self._lanes.get(target)
        if lane is None:
            self._lanes[target] = _Lane(ThrottleWindow(interval_s))
        else:
            lane.window.interval_s = interval_s

    def remove(self, target: str) -> None:
        self._lanes.pop(target, None)
        self._waiting.discard(target)
        self._held.discard(target)

    def add(
        self,
        target: str,
        changes: ResourceChanges,
        observed_at: float | None,
        delta_at: float | None = None,
    ) -> int:
        """Fold a delta into the target's pending change; returns entries coalesced."""
        lane = self._lanes[target]
        merged = lane.pending.add(changes)
        lane.pending_observed_at = _earliest(lane.pending_observed_at, observed_at)
        lane.pending_delta_at = _earliest(lane.pending_delta_at, delta_at)
        (self._held if lane.busy else self._waiting).add(target)
        return merged

    def take_due(self, now: float) -> list[Outgoing]:
        """Every notification that may go out now; their lanes become busy."""
        due: list[Outgoing] = []
        for target in list(self._waiting):
            lane = self._lanes[target]
            if not lane.window.allows(now):
                continue
            self._waiting.discard(target)
            changes = lane.pending.net()
            observed_at, delta_at = lane.pending_observed_at, lane.pending_delta_at
            lane.pending = NetDelta()
            lane.pending_observed_at = lane.pending_delta_at = None
            if not changes:
                continue
            lane.busy = True
            lane.taken += 1
            due.append(Outgoing(target, lane.taken, changes, observed_at, delta_at))
        return due

    def attempted(self, target: str, at: float) -> None:
        """A POST went out at ``at``: the window restarts from there."""
        lane = self._lanes.get(target)
        if lane is not None:
            lane.window.sent(at)

    def finished(self, target: str) -> None:
        """The notification out is delivered or dead-lettered: the next one may follow."""
        lane = self._lanes.get(target)
        if lane is None:
            return
        lane.busy = False
        self._held.discard(target)
        if lane.pending:
            self._waiting.add(target)

    def next_due_at(self, now: float) -> float | None:
        """When :meth:`take_due` will next have something (``now`` if already)."""
        times = [self._lanes[t].window.opens_at(now) for t in self._waiting]
        return min(times) if times else None

    def holds_back(self) -> bool:
        """Whether a change waits for a notification still out (to go once it finishes)."""
        return bool(self._held)

    def is_busy(self, target: str) -> bool:
        lane = self._lanes.get(target)
        return lane is not None and lane.busy

    def interval_s(self, target: str) -> float:
        return self._lanes[target].window.interval_s

    def snapshot(self, target: str) -> dict[str, Any]:
        """The lane's durable state (restored with :meth:`restore`)."""
        lane = self._lanes[target]
        return {
            "pending": lane.pending.to_json(),
            "pending-observed-at": lane.pending_observed_at,
            "last-sent-at": lane.window.last_sent_at,
            "taken": lane.taken,
        }

    def restore(self, target: str, interval_s: float, state: dict[str, Any], busy: bool) -> None:
        lane = _Lane(
            ThrottleWindow(interval_s, state.get("last-sent-at")),
            pending=NetDelta.from_json(state.get("pending") or [], self.legacy_cluster),
            pending_observed_at=state.get("pending-observed-at"),
            busy=busy,
            taken=int(state.get("taken") or 0),
        )
        self._lanes[target] = lane
        self._waiting.discard(target)
        self._held.discard(target)
        if lane.pending:
            (self._held if busy else self._waiting).add(target)


def _earliest(held: float | None, new: float | None) -> float | None:
    """The earlier of two optional times (a lane times its oldest change)."""
    if new is None:
        return held
    return new if held is None or new < held else held
