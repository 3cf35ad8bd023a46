"""The notifier's rules: what a command, a delta, a delivery report or a due window changes.

Every decision the notifier makes lives here, in one class with no I/O: no Kafka, no HTTP, no
DNS, no clock (the turn carries the time). The loop (:mod:`services.notifier.worker`) decodes
what it consumed, calls these methods, and writes the :class:`Turn` they fill in one
transaction; so each rule (throttle, coalescing, baseline, ignore-fields, filters and patches,
retry and dead-letter, CPS lanes) is unit-tested by feeding inputs and reading the turn.

State, in the shape of Kafka Streams' task state: the command table (subscription states), one
:class:`Subscriber` record per callback subscription, the coalescing queue (pending changes and
throttle windows of every target), and the CPS lanes. All of it is derived from the two
compacted topics the turn writes, so a restart rebuilds exactly what was committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from deltawatch.cloud_events import rfc3339_ms
from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from services.notifier import metrics
from services.notifier.coalescing_queue import CoalescingQueue, Outgoing
from services.notifier.command_handling import (
    CommandContext,
    SubscriptionChange,
    SubscriptionTable,
    handle_command,
    reject,
)
from services.notifier.commands import Command, Rejection
from services.notifier.cps import subscriptions as cps_subscriptions
from services.notifier.cps.directory import CpsDirectory
from services.notifier.cps.event_writer import CpsEventWriter
from services.notifier.cps.lanes import CpsLanes, is_lane_target
from services.notifier.cps.subscriptions import DataspaceSubscription
from services.notifier.delivery.deliveries import AttemptReport, DeliveryJob, Target
from services.notifier.delivery.secret_box import SecretBox
from services.notifier.delta_input import DeltaInput
from services.notifier.notification import dead_letter, form_notification
from services.notifier.subscriber import Subscriber
from services.notifier.subscription_state import CpsLaneRecord
from services.notifier.turn import Turn, TurnProducer

log = get_logger("deltawatch.notifier")


class NotifierRules:
    def __init__(self, settings: NotifierSettings, directory: CpsDirectory) -> None:
        self.settings = settings
        self.table = SubscriptionTable()
        self.subscribers: dict[str, Subscriber] = {}
        self.dataspace_partitions: dict[str, int] = {}
        """Partition of each CPS dataspace state this notifier owns (key ``cps/<dataspace>``)."""
        self.queue = CoalescingQueue(legacy_cluster=settings.cluster)
        self.cps_lanes = CpsLanes(self.queue, settings.cps_min_notify_interval)
        self.cps_directory = directory
        """Every replica's CPS subscriptions, read by a follower thread the loop drains."""
        self.owned: set[int] = set()
        """Partitions restored and not revoked since: their commands and deltas are ours."""
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.box = SecretBox(secret) if secret else None
        self.resealed: set[str] = set()
        """Subscriptions whose secret was sealed again with the newest key at restore, to be
        written to the outbox by the next turn (:meth:`write_resealed`)."""
        self.outbox_topic = settings.changelog_topic("notifier", "outbox")

    # --- commands ------------------------------------------------------------------------

    def on_command(
        self, parsed: Command | Rejection, context: CommandContext, partition: int, turn: Turn
    ) -> None:
        """Answer one command exactly once and write the state change it makes."""
        if isinstance(parsed, Rejection):
            applied = reject(parsed, context.now)
        else:
            applied = handle_command(self.table, parsed, context)
        result = applied.result
        code = result.error.code if result.error else "accepted"
        metrics.COMMANDS.labels(result.action or "unknown", code).inc()
        log.info(
            "command answered",
            command_id=result.command_id,
            action=result.action,
            instance_id=result.instance_id,
            subscription=result.subscription_name,
            result=code,
            message=result.error.message if result.error else None,
        )
        settings = self.settings
        turn.produce(settings.command_results_topic, None, result.command_id, result.to_bytes())
        for key, value in applied.writes:
            turn.produce(settings.subscriptions_topic, partition, key, value)
            if cps_subscriptions.dataspace_of_key(key) is not None:
                self.dataspace_partitions[key] = partition
        if applied.change is not None:
            self._on_change(applied.change, partition, turn)

    def _on_change(self, change: SubscriptionChange, partition: int, turn: Turn) -> None:
        key = change.key
        if change.kind == "deleted" or change.state is None:
            self._forget(key)
            turn.cancelled.append(key)
            turn.produce(self.outbox_topic, partition, key, None)
        else:
            subscriber = self.subscribers.setdefault(key, Subscriber(partition))
            subscriber.partition = partition
            self.queue.configure(key, change.state.min_notify_interval)
            subscriber.sealed_secret = (
                self.box.seal(change.secret.get_secret_value())
                if change.secret is not None and self.box is not None
                else None
            )
            subscriber.filter_for(change.state)
            turn.dirty_outbox.add(key)
        metrics.SUBSCRIPTIONS.set(len(self.table.subscriptions))

    # --- deltas --------------------------------------------------------------------------

    def on_delta(self, delta: DeltaInput, turn: Turn) -> None:
        """Add one delta to the pending change of every subscription and CPS lane it concerns."""
        routed = self.cps_lanes.route(
            delta.instance_id,
            delta.partition,
            delta.changes,
            delta.observed_at,
            self.cps_states(turn),
        )
        turn.dirty_outbox.update(routed.fed)
        for target in routed.dropped:
            self._drop_cps_lane(target, turn)
        told = len(routed.fed)
        for state in self.table.of_instance(delta.instance_id):
            if delta.observed_at * 1000 < state.created_at_ms:
                continue  # the baseline: this change predates the subscription
            key = state.key
            subscriber = self.subscribers.get(key)
            own = delta.changes
            if subscriber is not None:
                own = subscriber.select(delta.changes)
                if subscriber.remembers:
                    turn.dirty_outbox.add(key)  # a filter's memory moved on
                if not own:
                    continue  # filtered out, or only ignored fields changed
            metrics.COALESCED.inc(self.queue.add(key, own, delta.observed_at, delta.delta_at))
            turn.dirty_outbox.add(key)
            told += 1
        subscribed = bool(self.table.by_instance.get(delta.instance_id)) or routed.subscribed
        metrics.DELTAS.labels(
            "routed" if told else "filtered" if subscribed else "no-subscriber"
        ).inc()

    def cps_states(self, turn: Turn) -> dict[str, DataspaceSubscription]:
        """Every dataspace's subscription: the directory, overridden by the partitions owned.

        For the partitions this replica owns, its command table is the truth and may be
        ahead of the directory (commands of this very turn); a dataspace missing there was
        unsubscribed, whatever the directory still says.
        """
        if turn.cps_states is None:
            states = self.cps_directory.outside(self.owned)
            states.update(self.table.cps)
            turn.cps_states = states
        return turn.cps_states

    def write_resealed(self, turn: Turn) -> None:
        """Write the secrets re-sealed at restore with the turn (their partitions still ours)."""
        for key in self.resealed:
            if key in self.subscribers:
                turn.dirty_outbox.add(key)
        self.resealed.clear()

    # --- due windows ---------------------------------------------------------------------

    def take_due(self, turn: Turn) -> None:
        """Every target whose throttle window is open and has a pending change goes out now."""
        for outgoing in self.queue.take_due(turn.now):
            if is_lane_target(outgoing.target):
                self._publish_cps(outgoing, turn)
            else:
                self._form(outgoing, turn)

    def _form(self, outgoing: Outgoing, turn: Turn) -> None:
        key = outgoing.target
        state = self.table.subscriptions[key]
        subscriber = self.subscribers[key]
        told = subscriber.tell(outgoing.changes)
        turn.dirty_outbox.add(key)
        if not told:
            self.queue.finished(key)  # nothing it wants is left of the net change
            return
        flight = form_notification(state, told, outgoing.number, outgoing.observed_at)
        subscriber.in_flight = flight
        turn.jobs.append(
            DeliveryJob(
                key,
                flight.webhook_id,
                flight.body.encode(),
                observed_at=flight.observed_at,
                delta_at=outgoing.delta_at,
            )
        )
        metrics.NOTIFICATIONS.inc()

    def _publish_cps(self, outgoing: Outgoing, turn: Turn) -> None:
        """A due CPS lane: its events join this turn's transaction with its new state."""
        target = outgoing.target
        if not self.cps_lanes.still_wanted(target, self.cps_states(turn)):
            self._drop_cps_lane(target, turn)  # unsubscribed since the change was queued
            return
        lane = self.cps_lanes.lanes[target]
        writer = CpsEventWriter.from_settings(TurnProducer(turn), self.settings)
        observed = outgoing.observed_at if outgoing.observed_at is not None else turn.now
        events = writer.write_net_delta(
            dataspace=lane.dataspace,
            anchor=lane.anchor,
            view=lane.view,
            resource_changes=outgoing.changes.to_json(),
            observed_at=datetime.fromtimestamp(observed, UTC),
            notification_id=lane.notification_id(outgoing.number),
        )
        if events:
            self.queue.attempted(target, turn.now)
        self.queue.finished(target)
        turn.dirty_outbox.add(target)
        log.info(
            "CPS events produced",
            dataspace=lane.dataspace,
            anchor=lane.anchor,
            instance_id=lane.anchor,
            notification=lane.notification_id(outgoing.number),
            events=len(events),
        )

    def _drop_cps_lane(self, target: str, turn: Turn) -> None:
        lane = self.cps_lanes.lanes.get(target)
        if lane is None:
            return
        self.cps_lanes.remove(target)
        turn.dirty_outbox.discard(target)
        turn.produce(self.outbox_topic, lane.partition, target, None)

    # --- delivery reports ----------------------------------------------------------------

    def on_report(self, report: AttemptReport, turn: Turn) -> None:
        """Record one attempt; on the last one, free the lane (and dead-letter if given up)."""
        key = report.key
        subscriber = self.subscribers.get(key)
        flight = subscriber.in_flight if subscriber is not None else None
        if subscriber is None or flight is None or flight.webhook_id != report.webhook_id:
            return  # the subscription was deleted or its partition revoked meanwhile
        result = report.result
        flight.attempts = report.attempts
        flight.first_attempt_at = report.first_attempt_at
        flight.last_attempt_at = result.at
        flight.last_status = result.status
        flight.last_error = result.error
        self.queue.attempted(key, max(result.at, result.ended_at))
        state = self.table.subscriptions.get(key)
        if state is not None:
            state.last_notify_time = rfc3339_ms(datetime.fromtimestamp(result.at, UTC))
            state.last_notify_status = result.status
            turn.dirty_state.add(key)
        turn.dirty_outbox.add(key)
        verdict = report.verdict
        keys = {"subscription": key, "webhook_id": flight.webhook_id}
        if verdict.outcome == "retry":
            retry_in_s = round(verdict.delay_s, 3)
            log.info(
                "callback attempt failed, will retry",
                **keys,
                attempt=flight.attempts,
                error=result.error,
                retry_in_s=retry_in_s,
            )
            return
        subscriber.in_flight = None
        self.queue.finished(key)
        if verdict.outcome == "delivered":
            metrics.DELIVERIES.labels("delivered").inc()
            return
        metrics.DELIVERIES.labels("dead-lettered").inc()
        metrics.DLQ.inc()
        log.warning(
            "notification dead-lettered", **keys, attempts=flight.attempts, reason=verdict.reason
        )
        letter = dead_letter(key, flight, verdict.reason)
        turn.produce(self.settings.dlq_topic, None, key, letter.to_bytes())

    # --- what the turn persists ----------------------------------------------------------

    def seal(self, turn: Turn) -> None:
        """Write the outbox and state records of every target this turn changed."""
        for key in sorted(turn.dirty_outbox):
            lane = self.cps_lanes.lanes.get(key)
            if lane is not None:
                cps_record = CpsLaneRecord(
                    dataspace=lane.dataspace,
                    anchor=lane.anchor,
                    since_ms=lane.since_ms,
                    lane=self.queue.snapshot(key),
                    view=lane.view.to_json(),
                )
                turn.produce(self.outbox_topic, lane.partition, key, cps_record.to_bytes())
                continue
            subscriber = self.subscribers.get(key)
            if subscriber is None or key not in self.queue:
                continue
            record = subscriber.outbox_record(self.queue.snapshot(key))
            turn.produce(self.outbox_topic, subscriber.partition, key, record.to_bytes())
        for key in sorted(turn.dirty_state):
            subscriber = self.subscribers.get(key)
            state = self.table.subscriptions.get(key)
            if subscriber is not None and state is not None:
                turn.produce(
                    self.settings.subscriptions_topic, subscriber.partition, key, state.to_bytes()
                )

    # --- ownership -----------------------------------------------------------------------

    def target(self, key: str) -> Target | None:
        """How to call subscription ``key`` now (``None``: it no longer exists)."""
        state = self.table.subscriptions.get(key)
        subscriber = self.subscribers.get(key)
        if state is None or subscriber is None:
            return None
        return subscriber.target(state, self.box)

    def forget_partitions(self, partitions: Iterable[int]) -> list[str]:
        """Drop what revoked partitions held (it stays in Kafka); the subscriptions forgotten."""
        revoked = set(partitions)
        keys = [k for k, s in self.subscribers.items() if s.partition in revoked]
        keys += [k for k, p in self.dataspace_partitions.items() if p in revoked]
        for key in keys:
            self._forget(key)
        self.cps_lanes.drop_partitions(revoked)
        self.owned -= revoked
        metrics.SUBSCRIPTIONS.set(len(self.table.subscriptions))
        return keys

    def _forget(self, key: str) -> None:
        self.subscribers.pop(key, None)
        self.dataspace_partitions.pop(key, None)
        self.table.remove(key)
        dataspace = cps_subscriptions.dataspace_of_key(key)
        if dataspace is not None:
            self.table.cps.pop(dataspace, None)
        self.queue.remove(key)
