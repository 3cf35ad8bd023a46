"""Forming a notification and its dead letter: the exact bytes a subscriber receives.

Pure functions, so that the body frozen in the outbox, the id a retry reuses after a restart
and the dead letter an operator replays are all decided in one place and tested directly.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from deltawatch.cloud_events import rfc3339_ms
from services.notifier.delivery.dead_letter import DeadLetter
from services.notifier.net_delta import ResourceChanges
from services.notifier.subscription_state import InFlight, SubscriptionState


def webhook_id(key: str, created_at_ms: int, number: int) -> str:
    """Deterministic: the same notification of the same subscription has the same id."""
    digest = hashlib.sha256(f"{key}\0{created_at_ms}\0{number}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def notification_body(state: SubscriptionState, changes: ResourceChanges) -> str:
    """The callback body of CONTRACT §5 (compact JSON, UTF-8 kept as is)."""
    return json.dumps(
        {
            "instance-id": state.instance_id,
            "subscription-name": state.name,
            "metadata": state.metadata,
            "resource-changes": changes.to_json(),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def form_notification(
    state: SubscriptionState, changes: ResourceChanges, number: int, observed_at: float | None
) -> InFlight:
    return InFlight(
        webhook_id=webhook_id(state.key, state.created_at_ms, number),
        number=number,
        body=notification_body(state, changes),
        observed_at=observed_at,
    )


def dead_letter(key: str, flight: InFlight, reason: str | None) -> DeadLetter:
    """The dead letter of a notification given up on: its body as the payload, to replay."""
    instance_id, _, name = key.partition("/")
    return DeadLetter(
        instance_id=instance_id,
        subscription_name=name,
        webhook_id=flight.webhook_id,
        payload=json.loads(flight.body),
        attempts=flight.attempts,
        last_status=flight.last_status,
        last_error=reason or flight.last_error,
        first_attempt_at=_time_text(flight.first_attempt_at),
        last_attempt_at=_time_text(flight.last_attempt_at),
    )


def _time_text(epoch_s: float | None) -> str | None:
    return rfc3339_ms(datetime.fromtimestamp(epoch_s, UTC)) if epoch_s is not None else None
