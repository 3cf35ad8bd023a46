"""One callback subscription as delivery keeps it: the record every delivery rule reads.

The command side owns a subscription's :class:`SubscriptionState` (in the
:class:`~services.notifier.command_handling.SubscriptionTable`); everything delivery must know
besides lives here, in one record per subscription, instead of one dict per concern. Its
pending change and throttle window live in the
:class:`~services.notifier.coalescing_queue.CoalescingQueue`, which orders all targets (CPS
lanes too) by when they are due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.notifier.change_filter import ChangeFilter
from services.notifier.delivery.deliveries import Target
from services.notifier.delivery.secret_box import SecretBox, SecretBoxError
from services.notifier.delivery.webhook_signing import secret_key
from services.notifier.ignore_fields import IgnoreFieldsFilter
from services.notifier.net_delta import ResourceChanges
from services.notifier.subscription_state import InFlight, OutboxRecord, SubscriptionState
from services.notifier.told_objects import ToldObjects


@dataclass
class Subscriber:
    """Invariants, per field (each holds between turns):

    * ``partition``: the commands / deltas partition the subscription lives on; its state and
      outbox records are written there, and it is forgotten when that partition is revoked.
    * ``sealed_secret``: its signing secret sealed with ``DELTAWATCH_SECRET_KEY``, ``None`` for
      an unsigned subscription; never the clear secret.
    * ``ignore_filter``: ``None`` exactly when the subscription ignores no field.
    * ``change_filter``: ``None`` exactly when the subscription has no ``change-types``,
      ``kinds``, ``namespaces`` nor ``exclude-namespaces``.
    * ``told``: ``None`` exactly when the subscription does not ask for ``include-patch``;
      else the objects its formed callbacks told it of, and nothing it was not told of.
    * ``in_flight``: the notification formed and committed but not yet delivered nor
      dead-lettered; while it is set the subscription's queue lane is busy, and at most one
      notification per subscription is ever in flight.
    """

    partition: int
    sealed_secret: str | None = None
    ignore_filter: IgnoreFieldsFilter | None = None
    change_filter: ChangeFilter | None = None
    told: ToldObjects | None = None
    in_flight: InFlight | None = None

    def filter_for(self, state: SubscriptionState) -> None:
        """Keep the filters in step with the state (a filter's memory kept if unchanged)."""
        paths = tuple(state.ignore_fields or ())
        if not paths:
            self.ignore_filter = None
        elif self.ignore_filter is None or self.ignore_filter.paths != paths:
            self.ignore_filter = IgnoreFieldsFilter(paths)
        self.change_filter = ChangeFilter.of(state)
        if not state.include_patch:
            self.told = None
        elif self.told is None:
            self.told = ToldObjects()

    @property
    def remembers(self) -> bool:
        """Whether every delta may move a filter's memory (to persist with the outbox)."""
        return self.ignore_filter is not None or self.told is not None

    def select(self, changes: ResourceChanges) -> ResourceChanges:
        """The part of a delta to add to this subscription's lane (maybe nothing)."""
        own = self.ignore_filter.apply(changes) if self.ignore_filter is not None else changes
        if self.change_filter is None:
            return own
        selected = self.change_filter.select(own)
        if self.told is not None:
            self.told.forget(e for e in own.deleted if e not in selected.deleted)
        return selected

    def tell(self, net: ResourceChanges) -> ResourceChanges:
        """A net change taken off the lane → what the callback tells (maybe nothing)."""
        if self.change_filter is not None:
            net = self.change_filter.wanted_net(net)
        if self.told is not None and net:
            net = self.told.tell(net)
        return net

    def outbox_record(self, lane: dict[str, Any]) -> OutboxRecord:
        return OutboxRecord(
            sealed_secret=self.sealed_secret,
            lane=lane,
            in_flight=self.in_flight,
            ignore_fields_seen=self.ignore_filter.seen if self.ignore_filter else {},
            told_objects=self.told.objects if self.told else {},
        )

    def target(self, state: SubscriptionState, box: SecretBox | None) -> Target:
        """Where and how to call: the URL, the signing key, or why it cannot be called."""
        interval = state.min_notify_interval
        if self.sealed_secret is None:
            return Target(state.callback_url, None, interval)
        if box is None:
            problem = "subscription has a secret but DELTAWATCH_SECRET_KEY is not set"
            return Target(state.callback_url, None, interval, problem=problem)
        try:
            key_bytes = secret_key(box.open(self.sealed_secret))
        except (SecretBoxError, ValueError) as exc:
            return Target(state.callback_url, None, interval, problem=str(exc))
        return Target(state.callback_url, key_bytes, interval)
