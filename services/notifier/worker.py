"""The notifier's Kafka loop: commands and deltas in, one transaction per turn out.

Every turn of the loop consumes a batch (commands first, then deltas), folds in the delivery
attempts reported since the last turn, forms the notifications whose throttle window is
open, and writes everything that follows from that in ONE Kafka transaction together with
the consumed offsets: command results, subscription states, outbox records (pending net
change + notification in flight), dead letters. Only after the commit are deliveries
started. Hence:

* every command is answered exactly once, and its state change is never half-applied;
* a delta whose offset is committed is in the outbox (pending or in flight) — after a crash
  the restored outbox still holds it, so nothing consumed is lost, and the webhook-id of a
  notification is durable before its first POST (retries after a restart reuse it).

Partitioning: commands and deltas are both keyed by instance-id, so partition ``p`` of both
belongs to the same instance set. The consumer uses the ``range`` assignor, which gives one
member the same partition numbers of both topics, and the notifier writes each
subscription's state and outbox record to that same partition ``p``. A member restores
exactly the partitions it is assigned; state of revoked partitions is dropped. (This needs
commands and deltas produced with the same partitioner, as every deltawatch producer is.)

CPS delta notification (CONTRACT §7) rides the same transactions. A dataspace's state lives on
the partition of its command (key = dataspace), the deltas of its anchors on theirs, so every
replica reads every dataspace's state (:mod:`services.notifier.cps.directory`; its own table
wins for the partitions it owns). The per-anchor lanes (:mod:`services.notifier.cps.lanes`) live
on the anchor's deltas partition in the same coalescing queue as callback subscriptions; a due
lane's CPS events are produced in the turn's transaction together with the lane's state (pending
change, window, the told objects) and the offsets of the deltas it came from — so a
``read_committed`` consumer of the CPS topic sees each event once, whatever crashes.

Any failure to commit is fatal on purpose: the in-memory state ran ahead of Kafka, and the
only correct state is the committed one, which a restart restores.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from pydantic import ValidationError

from deltawatch.call_deadline import call_deadline
from deltawatch.cloud_events import DELTA_TYPE, CloudEventDecodeError, from_kafka, rfc3339_ms
from deltawatch.compacted_table import read_table
from deltawatch.health import HealthState
from deltawatch.kafka_clients import consume_available, make_consumer, make_producer
from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from deltawatch.topics import TopicSpec, changelog_topic, contract_topics
from services.notifier import metrics
from services.notifier.coalescing_queue import CoalescingQueue, Outgoing
from services.notifier.command_handling import (
    CommandContext,
    SubscriptionChange,
    SubscriptionTable,
    handle_command,
    reject,
)
from services.notifier.commands import (
    CpsCommand,
    CreateCommand,
    Rejection,
    UpdateCommand,
    is_ip_literal,
    parse_command,
    url_host_port,
)
from services.notifier.cps import subscriptions as cps_subscriptions
from services.notifier.cps.directory import CpsDirectory, CpsDirectoryReader
from services.notifier.cps.event_writer import CpsEventWriter
from services.notifier.cps.events import AnchorView
from services.notifier.cps.lanes import CpsLane, CpsLanes, is_lane_target
from services.notifier.cps.subscriptions import DataspaceSubscription
from services.notifier.delivery.callback_client import CallbackClient
from services.notifier.delivery.callback_networks import resolve
from services.notifier.delivery.dead_letter import DeadLetter
from services.notifier.delivery.deliveries import AttemptReport, Deliveries, DeliveryJob, Target
from services.notifier.delivery.secret_box import SecretBox, SecretBoxError
from services.notifier.delivery.webhook_signing import secret_key
from services.notifier.ignore_fields import IgnoreFieldsFilter
from services.notifier.net_delta import ResourceChanges
from services.notifier.subscription_state import (
    CpsLaneRecord,
    InFlight,
    OutboxRecord,
    SubscriptionState,
)

_CONSUMER_OVERRIDES: dict[str, Any] = {
    # Same partition numbers of commands and deltas on the same member (co-partitioning).
    "partition.assignment.strategy": "range",
    "enable.partition.eof": True,
}
MAX_BATCH = 500
MAX_POLL_S = 0.2
RESOLVE_TIMEOUT_S = 2.0
RESTORE_CLIENT_ID = "deltawatch-notifier-restore"

log = get_logger("deltawatch.notifier")


def notifier_topics(settings: NotifierSettings) -> list[TopicSpec]:
    return [*contract_topics(settings).values(), changelog_topic(settings, "notifier", "outbox")]


def identities(settings: NotifierSettings) -> tuple[str, str]:
    """The consumer group and the transactional id (also the static group member id).

    One notifier deployment serves one commands topic, so without explicit settings both are
    derived from it (plain ``deltawatch-notifier`` for the default topic), plus the host name
    for the per-replica transactional id: a restarted replica fences its predecessor's open
    transaction and takes its partitions over at once, with no session timeout to wait for.
    """
    default_topic = NotifierSettings.model_fields["commands_topic"].default
    deployment = (
        "deltawatch-notifier"
        if settings.commands_topic == default_topic
        else f"deltawatch-notifier.{settings.commands_topic}"
    )
    group_id = settings.group_id or deployment
    transactional_id = settings.transactional_id or f"{group_id}-{socket.gethostname()}"
    return group_id, transactional_id


def webhook_id(key: str, created_at_ms: int, number: int) -> str:
    """Deterministic: the same notification of the same subscription has the same id."""
    digest = hashlib.sha256(f"{key}\0{created_at_ms}\0{number}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


@dataclass(frozen=True)
class _Record:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    timestamp_ms: int = 0
    """0: the producer stamps it."""


@dataclass
class _Turn:
    """What one transaction writes, gathered while the turn is processed."""

    records: list[_Record] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dirty_outbox: set[str] = field(default_factory=set)
    dirty_state: set[str] = field(default_factory=set)
    jobs: list[DeliveryJob] = field(default_factory=list)
    cps_states: dict[str, DataspaceSubscription] | None = None
    """Every dataspace's CPS subscription as this turn sees it (computed once, on demand)."""

    def produce(self, topic: str, partition: int | None, key: str, value: bytes | None) -> None:
        self.records.append(_Record(topic, partition, key.encode(), value))

    def __bool__(self) -> bool:
        return bool(self.records or self.offsets or self.dirty_outbox or self.dirty_state)


class _TurnProducer:
    """The producer :class:`CpsEventWriter` writes to: records join the turn's transaction.

    Stamped with the turn's clock, the one the throttle window is kept with, so the record
    timestamps of a lane's events are ``DELTAWATCH_CPS_MIN_NOTIFY_INTERVAL`` apart at least.
    """

    def __init__(self, turn: _Turn, timestamp_ms: int) -> None:
        self._turn = turn
        self._timestamp_ms = timestamp_ms

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._turn.records.append(_Record(topic, None, key, value, headers, self._timestamp_ms))

    def poll(self, timeout: float = 0.0) -> int:
        return 0


class NotifierWorker:
    def __init__(
        self, settings: NotifierSettings, health: HealthState, stop: Callable[[], bool]
    ) -> None:
        self.settings = settings
        self.health = health
        self._stop = stop
        self.table = SubscriptionTable()
        self.queue = CoalescingQueue()
        self.in_flight: dict[str, InFlight] = {}
        self.sealed: dict[str, str | None] = {}
        self.partition_of: dict[str, int] = {}
        self.filters: dict[str, IgnoreFieldsFilter] = {}
        self.cps_lanes = CpsLanes(self.queue, settings.cps_min_notify_interval)
        self.cps_directory = CpsDirectory()
        self._cps_reader = CpsDirectoryReader(settings, self.cps_directory)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.box = SecretBox(secret) if secret else None
        self.outbox_topic = settings.changelog_topic("notifier", "outbox")
        self.group_id, self.transactional_id = identities(settings)
        self._reports: asyncio.Queue[AttemptReport] = asyncio.Queue()
        self.client = CallbackClient(
            settings.callback_timeout_s,
            settings.callback_allow_networks,
            settings.callback_deny_networks,
            settings.delivery_concurrency,
        )
        self.deliveries = Deliveries(
            self.client,
            self._reports,
            self._target,
            settings.delivery_max_attempts,
            settings.delivery_max_age_s,
            settings.delivery_concurrency,
        )
        self._assigned: set[int] = set()
        self._assignment_events: list[tuple[str, list[int]]] = []
        self._not_at_end: set[tuple[str, int]] = set()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        self._producer = make_producer(
            self.settings, transactional_id=self.transactional_id, client_id="deltawatch-notifier"
        )
        await asyncio.to_thread(self._producer.init_transactions, 60)
        await asyncio.to_thread(self._cps_reader.start)
        self._consumer = make_consumer(
            self.settings,
            self.group_id,
            client_id="deltawatch-notifier",
            **{**_CONSUMER_OVERRIDES, "group.instance.id": self.transactional_id},
        )
        self._consumer.subscribe(
            [self.settings.commands_topic, self.settings.deltas_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info("notifier consuming", group=self.group_id, tx=self.transactional_id)
        try:
            while not self._stop():
                self.health.beat()
                messages = await asyncio.to_thread(
                    consume_available, self._consumer, MAX_BATCH, self._poll_timeout()
                )
                await self._apply_assignment_events()
                await self._turn(messages)
        finally:
            await self.deliveries.close()
            await self.client.close()
            await asyncio.to_thread(self._consumer.close)
            await asyncio.to_thread(self._cps_reader.close)
            log.info("notifier loop ended")

    def _poll_timeout(self) -> float:
        if not self._reports.empty():
            return 0.0
        due = self.queue.next_due_at(time.time())
        if due is None:
            return MAX_POLL_S
        return max(0.0, min(MAX_POLL_S, due - time.time()))

    async def _turn(self, messages: list[Message]) -> None:
        turn = _Turn()
        commands: list[Message] = []
        deltas: list[Message] = []
        for message in messages:
            topic, partition, offset = where(message)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end(topic, partition)
                elif error.fatal() or error.code() == KafkaError._FATAL:
                    # e.g. this static member fenced after its session expired in a broker
                    # outage: the consumer never fetches again; a restart rejoins and restores.
                    # (A consumer reports it as code _FATAL with the fatal flag unset.)
                    raise KafkaException(error)
                else:
                    log.warning("consumer error", error=str(error))
                continue
            if partition not in self._assigned:
                continue
            turn.offsets[(topic, partition)] = offset + 1
            if topic == self.settings.commands_topic:
                commands.append(message)
            else:
                deltas.append(message)
        for message in commands:
            await self._on_command(message, turn)
        if deltas or self.cps_lanes:
            self._cps_reader.drain()
        for message in deltas:
            self._on_delta(message, turn)
        while not self._reports.empty():
            self._on_report(self._reports.get_nowait(), turn)
        now = time.time()
        for outgoing in self.queue.take_due(now):
            if is_lane_target(outgoing.target):
                self._publish_cps(outgoing, now, turn)
            else:
                self._form(outgoing, turn)
        if not turn:
            return
        self._flush_state(turn)
        await asyncio.to_thread(self._commit, turn)
        metrics.TRANSACTIONS.inc()
        for job in turn.jobs:
            self.deliveries.start(job)

    def _commit(self, turn: _Turn) -> None:
        assert self._producer is not None
        assert self._consumer is not None
        producer = self._producer
        try:
            producer.begin_transaction()
            for record in turn.records:
                options: dict[str, Any] = {}
                if record.partition is not None:
                    options["partition"] = record.partition
                if record.headers:
                    options["headers"] = record.headers
                if record.timestamp_ms:
                    options["timestamp"] = record.timestamp_ms
                while True:
                    try:
                        producer.produce(
                            record.topic, key=record.key, value=record.value, **options
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            if turn.offsets:
                # librdkafka may ignore this call's timeout (see deltawatch.call_deadline)
                with call_deadline(45.0, "send_offsets_to_transaction", log):
                    producer.send_offsets_to_transaction(
                        [TopicPartition(t, p, o) for (t, p), o in turn.offsets.items()],
                        self._consumer.consumer_group_metadata(),
                        30,
                    )
            producer.commit_transaction(60)
        except KafkaException as exc:
            log.error("transaction failed: exiting to restore the committed state", error=str(exc))
            raise

    # --- assignment and restore ----------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment_events.append(("assign", [tp.partition for tp in partitions]))
        self._not_at_end.update((tp.topic, tp.partition) for tp in partitions)
        self.health.met("assigned")
        if partitions:
            self.health.unmet("restored")
            self.health.unmet("caught-up")

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment_events.append(("revoke", [tp.partition for tp in partitions]))
        for tp in partitions:
            self._not_at_end.discard((tp.topic, tp.partition))

    def _at_end(self, topic: str, partition: int) -> None:
        self._not_at_end.discard((topic, partition))
        if not self._not_at_end:
            self.health.met("caught-up")

    async def _apply_assignment_events(self) -> None:
        events, self._assignment_events = self._assignment_events, []
        for kind, partitions in events:
            if kind == "revoke":
                self._drop(set(partitions))
            else:
                await self._restore(sorted(set(partitions) - self._assigned))
        if events and not self._not_at_end:
            self.health.met("caught-up")

    def _drop(self, partitions: set[int]) -> None:
        for key in [k for k, p in self.partition_of.items() if p in partitions]:
            self._forget(key)
        self.cps_lanes.drop_partitions(partitions)
        self._assigned -= partitions
        metrics.SUBSCRIPTIONS.set(len(self.table.subscriptions))

    def _forget(self, key: str) -> None:
        self.partition_of.pop(key, None)
        self.table.remove(key)
        dataspace = cps_subscriptions.dataspace_of_key(key)
        if dataspace is not None:
            self.table.cps.pop(dataspace, None)
        self.queue.remove(key)
        self.in_flight.pop(key, None)
        self.sealed.pop(key, None)
        self.filters.pop(key, None)
        self.deliveries.cancel(key)

    async def _restore(self, partitions: list[int]) -> None:
        if partitions:
            started = time.monotonic()
            subscriptions, outbox = await asyncio.gather(
                asyncio.to_thread(
                    read_table,
                    self.settings,
                    self.settings.subscriptions_topic,
                    partitions,
                    client_id=RESTORE_CLIENT_ID,
                ),
                asyncio.to_thread(
                    read_table,
                    self.settings,
                    self.outbox_topic,
                    partitions,
                    client_id=RESTORE_CLIENT_ID,
                ),
            )
            for key, entry in subscriptions.items():
                self._restore_subscription(key, entry.partition, entry.value)
            jobs = [
                job
                for key, entry in outbox.items()
                if (job := self._restore_outbox(key, entry.partition, entry.value)) is not None
            ]
            self._assigned |= set(partitions)
            metrics.SUBSCRIPTIONS.set(len(self.table.subscriptions))
            log.info(
                "restored",
                partitions=partitions,
                subscriptions=len(subscriptions),
                in_flight=len(jobs),
                seconds=round(time.monotonic() - started, 3),
            )
            for job in jobs:
                self.deliveries.start(job)
        self.health.met("restored")

    def _restore_subscription(self, key: str, partition: int, value: bytes) -> None:
        try:
            if cps_subscriptions.dataspace_of_key(key) is not None:
                state = cps_subscriptions.decode_state(key, value)
                if state is not None:
                    self.table.cps[state.dataspace] = state
                    self.partition_of[key] = partition
                return
            subscription = SubscriptionState.model_validate_json(value)
        except (ValidationError, cps_subscriptions.CpsStateDecodeError) as exc:
            log.error("unreadable subscription state skipped", key=key, error=str(exc))
            return
        self.table.put(subscription)
        self.partition_of[key] = partition
        self.queue.configure(key, subscription.min_notify_interval)

    def _restore_outbox(self, key: str, partition: int, value: bytes) -> DeliveryJob | None:
        if is_lane_target(key):
            self._restore_cps_lane(key, partition, value)
            return None
        state = self.table.subscriptions.get(key)
        if state is None:
            return None
        try:
            record = OutboxRecord.model_validate_json(value)
        except ValidationError as exc:
            log.error("unreadable outbox record skipped", key=key, error=str(exc))
            return None
        self.sealed[key] = record.sealed_secret
        if state.ignore_fields:
            self.filters[key] = IgnoreFieldsFilter(
                tuple(state.ignore_fields), dict(record.ignore_fields_seen)
            )
        self.queue.restore(
            key, state.min_notify_interval, record.lane, record.in_flight is not None
        )
        flight = record.in_flight
        if flight is None:
            return None
        self.in_flight[key] = flight
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

    def _restore_cps_lane(self, key: str, partition: int, value: bytes) -> None:
        try:
            record = CpsLaneRecord.model_validate_json(value)
            view = AnchorView.from_json(record.view)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            log.error("unreadable CPS lane skipped", key=key, error=str(exc))
            return
        lane = CpsLane(record.dataspace, record.anchor, record.since_ms, partition, view)
        if lane.target != key:
            log.error("CPS lane under a foreign key skipped", key=key)
            return
        self.cps_lanes.restore(lane, record.lane)

    # --- commands --------------------------------------------------------------------------

    async def _on_command(self, message: Message, turn: _Turn) -> None:
        now = datetime.now(UTC)
        topic, partition, offset = where(message)
        position = f"{topic}/{partition}/{offset}"
        kind, stamp = message.timestamp()
        sent_at = (
            datetime.fromtimestamp(stamp / 1000, UTC) if kind != TIMESTAMP_NOT_AVAILABLE else now
        )
        parsed = parse_command(message.value(), position)
        if isinstance(parsed, Rejection):
            applied = reject(parsed, now)
        else:
            context = CommandContext(
                now=now,
                sent_at=sent_at,
                callback_addresses=await self._callback_addresses(parsed),
                allow_networks=self.settings.callback_allow_networks,
                deny_networks=self.settings.callback_deny_networks,
                secrets_enabled=self.box is not None,
            )
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
        turn.produce(
            self.settings.command_results_topic, None, result.command_id, result.to_bytes()
        )
        for key, value in applied.writes:
            turn.produce(self.settings.subscriptions_topic, partition, key, value)
            if cps_subscriptions.dataspace_of_key(key) is not None:
                self.partition_of[key] = partition
        if applied.change is not None:
            self._on_change(applied.change, partition, turn)

    async def _callback_addresses(self, command: CreateCommand | UpdateCommand | Any) -> list[Any]:
        if not isinstance(command, CreateCommand | UpdateCommand) or isinstance(
            command, CpsCommand
        ):
            return []
        settings = self.settings
        host, port = url_host_port(command.subscription.callback_url)
        if not (settings.callback_allow_networks or settings.callback_deny_networks):
            return []
        if not is_ip_literal(host):
            return list(await resolve(host, port, RESOLVE_TIMEOUT_S))
        return list(await resolve(host, port, 0.1))

    def _on_change(self, change: SubscriptionChange, partition: int, turn: _Turn) -> None:
        key = change.key
        if change.kind == "deleted" or change.state is None:
            self._forget(key)
            turn.produce(self.outbox_topic, partition, key, None)
        else:
            self.partition_of[key] = partition
            self.queue.configure(key, change.state.min_notify_interval)
            self.sealed[key] = (
                self.box.seal(change.secret.get_secret_value())
                if change.secret is not None and self.box is not None
                else None
            )
            paths = tuple(change.state.ignore_fields or ())
            if not paths:
                self.filters.pop(key, None)
            elif key not in self.filters or self.filters[key].paths != paths:
                self.filters[key] = IgnoreFieldsFilter(paths)
            turn.dirty_outbox.add(key)
        metrics.SUBSCRIPTIONS.set(len(self.table.subscriptions))

    # --- deltas ----------------------------------------------------------------------------

    def _on_delta(self, message: Message, turn: _Turn) -> None:
        position = "/".join(str(part) for part in where(message))
        headers = message.headers()
        try:
            if isinstance(headers, dict):
                raise CloudEventDecodeError("headers are not a list")
            event = from_kafka(
                message.key(),
                message.value(),
                [(name, raw) for name, raw in headers or [] if isinstance(raw, bytes)],
            )
        except CloudEventDecodeError as exc:
            log.warning("undecodable delta skipped", position=position, error=str(exc))
            metrics.DELTAS.labels("undecodable").inc()
            return
        if event.get_type() != DELTA_TYPE:
            metrics.DELTAS.labels("other-type").inc()
            return
        data = event.get_data()
        try:
            if not isinstance(data, dict):
                raise ValueError("data is not an object")
            instance_id = data.get("instance-id") or event.get_subject()
            if not isinstance(instance_id, str):
                raise ValueError("no instance-id")
            changes = ResourceChanges.from_json(data.get("resource-changes") or {})
        except ValueError as exc:
            log.warning("malformed delta skipped", position=position, error=str(exc))
            metrics.DELTAS.labels("malformed").inc()
            return
        event_time = event.get_time()
        observed_at = (
            event_time.timestamp() if event_time is not None else message.timestamp()[1] / 1000
        )
        routed = self.cps_lanes.route(
            instance_id, where(message)[1], changes, observed_at, self._cps_states(turn)
        )
        for target in routed.fed:
            turn.dirty_outbox.add(target)
        for target in routed.dropped:
            self._drop_cps_lane(target, turn)
        told = len(routed.fed)
        for subscription in self.table.of_instance(instance_id):
            if observed_at * 1000 < subscription.created_at_ms:
                continue  # the baseline: this change predates the subscription
            key = subscription.key
            own = changes
            if key in self.filters:
                own = self.filters[key].apply(changes)
                turn.dirty_outbox.add(key)
                if not own:
                    continue  # only ignored fields changed
            merged = self.queue.add(key, own, observed_at)
            metrics.COALESCED.inc(merged)
            turn.dirty_outbox.add(key)
            told += 1
        subscribed = bool(self.table.by_instance.get(instance_id)) or routed.subscribed
        metrics.DELTAS.labels(
            "routed" if told else "filtered" if subscribed else "no-subscriber"
        ).inc()

    # --- CPS events ------------------------------------------------------------------------

    def _cps_states(self, turn: _Turn) -> dict[str, DataspaceSubscription]:
        """Every dataspace's subscription: the directory, overridden by the partitions owned.

        For the partitions this replica owns, its command table is the truth and may be
        ahead of the directory (commands of this very turn); a dataspace missing there was
        unsubscribed, whatever the directory still says.
        """
        if turn.cps_states is None:
            states = self.cps_directory.outside(self._assigned)
            states.update(self.table.cps)
            turn.cps_states = states
        return turn.cps_states

    def _drop_cps_lane(self, target: str, turn: _Turn) -> None:
        lane = self.cps_lanes.lanes.get(target)
        if lane is None:
            return
        self.cps_lanes.remove(target)
        turn.dirty_outbox.discard(target)
        turn.produce(self.outbox_topic, lane.partition, target, None)

    def _publish_cps(self, outgoing: Outgoing, now: float, turn: _Turn) -> None:
        """A due CPS lane: its events join this turn's transaction with its new state."""
        target = outgoing.target
        if not self.cps_lanes.still_wanted(target, self._cps_states(turn)):
            self._drop_cps_lane(target, turn)  # unsubscribed since the change was queued
            return
        lane = self.cps_lanes.lanes[target]
        writer = CpsEventWriter.from_settings(_TurnProducer(turn, int(now * 1000)), self.settings)
        observed = outgoing.observed_at if outgoing.observed_at is not None else now
        events = writer.write_net_delta(
            dataspace=lane.dataspace,
            anchor=lane.anchor,
            view=lane.view,
            resource_changes=outgoing.changes.to_json(),
            observed_at=datetime.fromtimestamp(observed, UTC),
            notification_id=lane.notification_id(outgoing.number),
        )
        if events:
            self.queue.attempted(target, now)
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

    # --- notifications and delivery reports ----------------------------------------------------

    def _form(self, outgoing: Outgoing, turn: _Turn) -> None:
        key = outgoing.target
        state = self.table.subscriptions[key]
        body = json.dumps(
            {
                "instance-id": state.instance_id,
                "subscription-name": state.name,
                "metadata": state.metadata,
                "resource-changes": outgoing.changes.to_json(),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        flight = InFlight(
            webhook_id=webhook_id(key, state.created_at_ms, outgoing.number),
            number=outgoing.number,
            body=body,
            observed_at=outgoing.observed_at,
        )
        self.in_flight[key] = flight
        turn.dirty_outbox.add(key)
        turn.jobs.append(
            DeliveryJob(key, flight.webhook_id, body.encode(), observed_at=outgoing.observed_at)
        )
        metrics.NOTIFICATIONS.inc()

    def _on_report(self, report: AttemptReport, turn: _Turn) -> None:
        key = report.key
        flight = self.in_flight.get(key)
        if flight is None or flight.webhook_id != report.webhook_id:
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
        outcome = report.verdict.outcome
        if outcome == "retry":
            log.info(
                "callback attempt failed, will retry",
                subscription=key,
                webhook_id=flight.webhook_id,
                attempt=flight.attempts,
                error=result.error,
                retry_in_s=round(report.verdict.delay_s, 3),
            )
            return
        del self.in_flight[key]
        self.queue.finished(key)
        if outcome == "delivered":
            metrics.DELIVERIES.labels("delivered").inc()
            return
        metrics.DELIVERIES.labels("dead-lettered").inc()
        metrics.DLQ.inc()
        log.warning(
            "notification dead-lettered",
            subscription=key,
            webhook_id=flight.webhook_id,
            attempts=flight.attempts,
            reason=report.verdict.reason,
        )
        instance_id, _, name = key.partition("/")
        letter = DeadLetter(
            instance_id=instance_id,
            subscription_name=name,
            webhook_id=flight.webhook_id,
            payload=json.loads(flight.body),
            attempts=flight.attempts,
            last_status=flight.last_status,
            last_error=report.verdict.reason or flight.last_error,
            first_attempt_at=_time_text(flight.first_attempt_at),
            last_attempt_at=_time_text(flight.last_attempt_at),
        )
        turn.produce(self.settings.dlq_topic, None, key, letter.to_bytes())

    def _flush_state(self, turn: _Turn) -> None:
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
            partition = self.partition_of.get(key)
            if partition is None or key not in self.queue:
                continue
            record = OutboxRecord(
                sealed_secret=self.sealed.get(key),
                lane=self.queue.snapshot(key),
                in_flight=self.in_flight.get(key),
                ignore_fields_seen=self.filters[key].seen if key in self.filters else {},
            )
            turn.produce(self.outbox_topic, partition, key, record.to_bytes())
        for key in sorted(turn.dirty_state):
            partition = self.partition_of.get(key)
            state = self.table.subscriptions.get(key)
            if partition is not None and state is not None:
                turn.produce(self.settings.subscriptions_topic, partition, key, state.to_bytes())

    def _target(self, key: str) -> Target | None:
        state = self.table.subscriptions.get(key)
        if state is None:
            return None
        sealed = self.sealed.get(key)
        if sealed is None:
            return Target(state.callback_url, None, state.min_notify_interval)
        if self.box is None:
            return Target(
                state.callback_url,
                None,
                state.min_notify_interval,
                problem="subscription has a secret but DELTAWATCH_SECRET_KEY is not set",
            )
        try:
            key_bytes = secret_key(self.box.open(sealed))
        except (SecretBoxError, ValueError) as exc:
            return Target(state.callback_url, None, state.min_notify_interval, problem=str(exc))
        return Target(state.callback_url, key_bytes, state.min_notify_interval)


def where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (never None for consumed ones)."""
    return message.topic() or "", message.partition() or 0, message.offset() or 0


def _time_text(epoch_s: float | None) -> str | None:
    return rfc3339_ms(datetime.fromtimestamp(epoch_s, UTC)) if epoch_s is not None else None
