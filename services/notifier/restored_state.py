"""Rebuilding the rules' state of newly assigned partitions from the two compacted topics.

The subscriptions topic holds each subscription's (and each CPS dataspace's) state, the outbox
changelog its pending change, throttle window, filter memory and notification in flight; both
are written by the same transactions, so what is read here is one consistent commit. Pure:
the loop reads the tables (:func:`deltawatch.compacted_table.read_table`) and hands them in;
the notifications found in flight come back as jobs to resume, with their webhook-ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from deltawatch.compacted_table import TableEntry
from deltawatch.logs import get_logger
from deltawatch.resource_identity import upgrade_path
from services.notifier.cps import subscriptions as cps_subscriptions
from services.notifier.cps.events import AnchorView
from services.notifier.cps.lanes import CpsLane, is_lane_target
from services.notifier.delivery.deliveries import DeliveryJob
from services.notifier.ignore_fields import IgnoreFieldsFilter
from services.notifier.rules import NotifierRules
from services.notifier.subscriber import Subscriber
from services.notifier.subscription_state import CpsLaneRecord, OutboxRecord, SubscriptionState

log = get_logger("deltawatch.notifier")


def restore_partitions(
    rules: NotifierRules,
    partitions: list[int],
    subscriptions: Mapping[str, TableEntry],
    outbox: Mapping[str, TableEntry],
) -> list[DeliveryJob]:
    """Take the partitions' state into ``rules``; the deliveries that were in flight."""
    for key, entry in subscriptions.items():
        _restore_subscription(rules, key, entry.partition, entry.value)
    jobs = [
        job
        for key, entry in outbox.items()
        if (job := _restore_outbox(rules, key, entry.partition, entry.value)) is not None
    ]
    rules.owned |= set(partitions)
    return jobs


def _restore_subscription(rules: NotifierRules, key: str, partition: int, value: bytes) -> None:
    try:
        if cps_subscriptions.dataspace_of_key(key) is not None:
            state = cps_subscriptions.decode_state(key, value)
            if state is not None:
                rules.table.cps[state.dataspace] = state
                rules.dataspace_partitions[key] = partition
            return
        subscription = SubscriptionState.model_validate_json(value)
    except (ValidationError, cps_subscriptions.CpsStateDecodeError) as exc:
        log.error("unreadable subscription state skipped", key=key, error=str(exc))
        return
    rules.table.put(subscription)
    subscriber = Subscriber(partition)
    subscriber.filter_for(subscription)
    rules.subscribers[key] = subscriber
    rules.queue.configure(key, subscription.min_notify_interval)


def _restore_outbox(
    rules: NotifierRules, key: str, partition: int, value: bytes
) -> DeliveryJob | None:
    if is_lane_target(key):
        _restore_cps_lane(rules, key, partition, value)
        return None
    state = rules.table.subscriptions.get(key)
    subscriber = rules.subscribers.get(key)
    if state is None or subscriber is None:
        return None
    try:
        record = OutboxRecord.model_validate_json(value)
    except ValidationError as exc:
        log.error("unreadable outbox record skipped", key=key, error=str(exc))
        return None
    subscriber.sealed_secret = record.sealed_secret
    if record.sealed_secret is not None and rules.box is not None:
        resealed = rules.box.reseal(record.sealed_secret)
        if resealed is not None:  # sealed with a key being rotated out: write it anew
            subscriber.sealed_secret = resealed
            rules.resealed.add(key)
    if state.ignore_fields:
        subscriber.ignore_filter = IgnoreFieldsFilter(
            tuple(state.ignore_fields),
            {
                upgrade_path(path, rules.settings.cluster): seen
                for path, seen in record.ignore_fields_seen.items()
            },
        )
    if subscriber.told is not None:
        subscriber.told.objects = dict(record.told_objects)
    flight = record.in_flight
    rules.queue.restore(key, state.min_notify_interval, record.lane, flight is not None)
    if flight is None:
        return None
    subscriber.in_flight = flight
    not_before = (flight.last_attempt_at or 0.0) + state.min_notify_interval
    return DeliveryJob(
        key,
        flight.webhook_id,
        flight.body.encode(),
        flight.attempts,
        flight.first_attempt_at,
        not_before,
        flight.observed_at,
    )


def _restore_cps_lane(rules: NotifierRules, key: str, partition: int, value: bytes) -> None:
    try:
        record = CpsLaneRecord.model_validate_json(value)
        view = AnchorView.from_json(record.view, rules.settings.cluster)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        log.error("unreadable CPS lane skipped", key=key, error=str(exc))
        return
    lane = CpsLane(record.dataspace, record.anchor, record.since_ms, partition, view)
    if lane.target != key:
        log.error("CPS lane under a foreign key skipped", key=key)
        return
    rules.cps_lanes.restore(lane, record.lane)
