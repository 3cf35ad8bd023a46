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

from services.notifier.delivery.deliveries import Target
from services.notifier.delivery.secret_box import SecretBox, SecretBoxError
from services.notifier.delivery.webhook_signing import secret_key
from services.notifier.ignore_fields import IgnoreFieldsFilter
from services.notifier.subscription_state import InFlight, OutboxRecord, SubscriptionState


@dataclass
class Subscriber:
    """Invariants, per field (each holds between turns):

    * ``partition``: the commands / deltas partition the subscription lives on; its state and
      outbox records are written there, and it is forgotten when that partition is revoked.
    * ``sealed_secret``: its signing secret sealed with ``DELTAWATCH_SECRET_KEY``, ``None`` for
      an unsigned subscription; never the clear secret.
    * ``ignore_filter``: ``None`` exactly when the subscription ignores no field.
    * ``in_flight``: the notification formed and committed but not yet delivered nor
      dead-lettered; while it is set the subscription's queue lane is busy, and at most one
      notification per subscription is ever in flight.
    """

    partition: int
    sealed_secret: str | None = None
    ignore_filter: IgnoreFieldsFilter | None = None
    in_flight: InFlight | None = None

    def filter_for(self, state: SubscriptionState) -> None:
        """Keep the filter in step with the state's ignore-fields (memory kept if unchanged)."""
        paths = tuple(state.ignore_fields or ())
        if not paths:
            self.ignore_filter = None
        elif self.ignore_filter is None or self.ignore_filter.paths != paths:
            self.ignore_filter = IgnoreFieldsFilter(paths)

    def outbox_record(self, lane: dict[str, Any]) -> OutboxRecord:
        return OutboxRecord(
            sealed_secret=self.sealed_secret,
            lane=lane,
            in_flight=self.in_flight,
            ignore_fields_seen=self.ignore_filter.seen if self.ignore_filter else {},
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
