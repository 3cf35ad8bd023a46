"""The notifier's Kafka loop: commands and deltas in, one transaction per turn out.

This module only moves records; every decision is :class:`~services.notifier.rules.
NotifierRules`'. Every turn consumes a batch (commands first, then deltas), folds in the
delivery attempts reported since the last turn, lets the rules form the notifications whose
throttle window is open, and writes the :class:`~services.notifier.turn.Turn` they filled in
ONE Kafka transaction (:class:`~deltawatch.processing_core.TransactionalCore`) together with
the consumed offsets: command results, subscription states, outbox records (pending net change
+ notification in flight), CPS events, dead letters. Only after the commit are deliveries
started. Hence:

* every command is answered exactly once, and its state change is never half-applied;
* a delta whose offset is committed is in the outbox (pending or in flight) — after a crash
  the restored outbox still holds it, so nothing consumed is lost, and the webhook-id of a
  notification is durable before its first POST (retries after a restart reuse it).

Partitioning: commands and deltas are both keyed by instance-id, so partition ``p`` of both
belongs to the same instance set. The consumer uses the ``range`` assignor, which gives one
member the same partition numbers of both topics, and the rules write each subscription's state
and outbox record to that same partition ``p``. A member restores exactly the partitions it is
assigned (:mod:`services.notifier.restored_state`); state of revoked partitions is dropped.

Any failure to commit ends the loop on purpose (the core is built with
``rewind_on_abort=False``): the rules' state ran ahead of Kafka, and the only correct state is
the committed one, which a restart restores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Message, TopicPartition

from deltawatch.compacted_table import read_table
from deltawatch.health import HealthState
from deltawatch.kafka_clients import consume_available, make_consumer, make_producer
from deltawatch.logs import get_logger
from deltawatch.member_claim import claim_worker_member
from deltawatch.member_identity import host_name, member_client_id, refuse_foreign_assignment
from deltawatch.processing_core import TransactionalCore
from deltawatch.settings import NotifierSettings
from deltawatch.topics import TopicSpec, changelog_topic, contract_topics
from services.notifier import metrics
from services.notifier.command_handling import CommandContext
from services.notifier.commands import (
    Command,
    CpsCommand,
    CreateCommand,
    Rejection,
    UpdateCommand,
    is_ip_literal,
    parse_command,
    url_host_port,
)
from services.notifier.cps.directory import CpsDirectory, CpsDirectoryReader
from services.notifier.delivery.callback_client import CallbackClient
from services.notifier.delivery.callback_networks import resolve
from services.notifier.delivery.deliveries import AttemptReport, Deliveries
from services.notifier.delta_input import SkippedDelta, read_delta
from services.notifier.restored_state import restore_partitions
from services.notifier.rules import NotifierRules
from services.notifier.turn import Turn

_CONSUMER_OVERRIDES: dict[str, Any] = {
    # Same partition numbers of commands and deltas on the same member (co-partitioning).
    "partition.assignment.strategy": "range",
    "enable.partition.eof": True,
}
MAX_BATCH = 500
MAX_POLL_S = 0.2
REPORT_CHECK_S = 0.005
"""While a change waits behind a notification still out, how often the wait for records
checks for that notification's report."""
RESOLVE_TIMEOUT_S = 2.0
TRANSACTION_TIMEOUT_S = 30.0
RESTORE_CLIENT_ID = "deltawatch-notifier-restore"

log = get_logger("deltawatch.notifier")


def notifier_topics(settings: NotifierSettings) -> list[TopicSpec]:
    return [*contract_topics(settings).values(), changelog_topic(settings, "notifier", "outbox")]


def identities(settings: NotifierSettings) -> tuple[str, str]:
    """The consumer group and the base of the member id (transactional and static member id).

    One notifier deployment serves one commands topic, so without explicit settings both are
    derived from it (plain ``deltawatch-notifier`` for the default topic), plus the host name
    for the per-replica member id: a restarted replica fences its predecessor's open
    transaction and takes its partitions over at once, with no session timeout to wait for.
    The id itself is claimed at start (:mod:`deltawatch.member_claim`): a second replica on
    the same host gets ``<base>-1``.
    """
    default_topic = NotifierSettings.model_fields["commands_topic"].default
    deployment = (
        "deltawatch-notifier"
        if settings.commands_topic == default_topic
        else f"deltawatch-notifier.{settings.commands_topic}"
    )
    group_id = settings.group_id or deployment
    return group_id, f"{group_id}-{host_name()}"


class NotifierWorker:
    def __init__(
        self, settings: NotifierSettings, health: HealthState, stop: Callable[[], bool]
    ) -> None:
        self.settings = settings
        self.health = health
        self._stop = stop
        directory = CpsDirectory()
        self._cps_reader = CpsDirectoryReader(settings, directory)
        self.rules = NotifierRules(settings, directory)
        self.group_id, self._member_id_base = identities(settings)
        self.transactional_id = ""
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
            self.rules.target,
            settings.delivery_max_attempts,
            settings.delivery_max_age_s,
            settings.delivery_concurrency,
        )
        self._assignment_events: list[tuple[str, list[int]]] = []
        self._not_at_end: set[tuple[str, int]] = set()
        self._core: TransactionalCore | None = None

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Process until stopped; raises ``FatalKafkaError`` / ``TransactionAbandoned``."""
        identity = await asyncio.to_thread(
            claim_worker_member,
            self.settings,
            self.group_id,
            base=self._member_id_base,
            explicit=self.settings.transactional_id,
            stop_requested=self._stop,
        )
        self.transactional_id = identity.id
        producer = make_producer(
            self.settings, transactional_id=identity.id, client_id="deltawatch-notifier"
        )
        consumer = make_consumer(
            self.settings,
            self.group_id,
            client_id=member_client_id("deltawatch-notifier"),
            **{**_CONSUMER_OVERRIDES, "group.instance.id": identity.id},
        )
        core = TransactionalCore(
            producer,
            consumer,
            log=log,
            transactions=metrics.TRANSACTIONS,
            rewind_on_abort=False,
            transaction_timeout_s=TRANSACTION_TIMEOUT_S,
        )
        self._core = core
        try:
            await asyncio.to_thread(core.init_transactions)
            await asyncio.to_thread(self._cps_reader.start)
            consumer.subscribe(
                [self.settings.commands_topic, self.settings.deltas_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            log.info("notifier consuming", group=self.group_id, tx=self.transactional_id)
            while not self._stop():
                self.health.beat()
                messages = await self._next_messages(consumer)
                records = core.usable(messages, on_end=self._at_end)
                await self._apply_assignment_events()
                await self._turn(core, records)
        finally:
            await self.deliveries.close()
            await self.client.close()
            await asyncio.to_thread(core.close)
            await asyncio.to_thread(self._cps_reader.close)
            identity.release()
            log.info("notifier loop ended")

    async def _next_messages(self, consumer: Consumer) -> list[Message]:
        """Records, waiting no longer than until the next throttle window opens.

        While a change waits behind a notification still out, the wait also ends once that
        notification's report is in: the report frees the lane, and the change goes out in
        the turn that handles it. (A change queued behind a callback then waited for the next
        record to arrive, or MAX_POLL_S, after the callback had long returned.)
        """
        wait_s = self._poll_timeout()
        deadline = time.monotonic() + wait_s
        while True:
            if self.rules.queue.holds_back():
                wait_s = min(wait_s, REPORT_CHECK_S)
            messages = await asyncio.to_thread(consume_available, consumer, MAX_BATCH, wait_s)
            wait_s = deadline - time.monotonic()
            if messages or not self._reports.empty() or wait_s <= 0 or self._stop():
                return messages

    def _poll_timeout(self) -> float:
        if not self._reports.empty():
            return 0.0
        due = self.rules.queue.next_due_at(time.time())
        if due is None:
            return MAX_POLL_S
        return max(0.0, min(MAX_POLL_S, due - time.time()))

    async def _turn(self, core: TransactionalCore, records: list[Message]) -> None:
        rules = self.rules
        turn = Turn(now=time.time())
        commands: list[Message] = []
        deltas: list[Message] = []
        for message in records:
            topic, partition, offset = where(message)
            if partition not in rules.owned:
                continue  # a revoked partition's record still in flight
            turn.offsets[(topic, partition)] = offset + 1
            (commands if topic == self.settings.commands_topic else deltas).append(message)
        for message in commands:
            parsed = parse_command(message.value(), "/".join(map(str, where(message))))
            context = await self._command_context(message, parsed)
            rules.on_command(parsed, context, where(message)[1], turn)
        if deltas or rules.cps_lanes:
            self._cps_reader.drain()
        for message in deltas:
            self._on_delta(message, turn)
        while not self._reports.empty():
            rules.on_report(self._reports.get_nowait(), turn)
        rules.write_resealed(turn)
        turn.now = time.time()
        rules.take_due(turn)
        for key in turn.cancelled:
            self.deliveries.cancel(key)
        if not turn:
            return
        rules.seal(turn)
        await asyncio.to_thread(core.commit, turn.records, turn.offsets)
        for job in turn.jobs:
            self.deliveries.start(job)

    def _on_delta(self, message: Message, turn: Turn) -> None:
        delta = read_delta(
            message.key(),
            message.value(),
            message.headers(),
            where(message)[1],
            message.timestamp()[1],
        )
        if isinstance(delta, SkippedDelta):
            metrics.DELTAS.labels(delta.reason).inc()
            if delta.error is not None:
                log.warning(
                    f"{delta.reason} delta skipped",
                    position="/".join(map(str, where(message))),
                    error=delta.error,
                )
            return
        self.rules.on_delta(delta, turn)

    async def _command_context(
        self, message: Message, parsed: Command | Rejection
    ) -> CommandContext:
        """Everything a command's rule needs from outside: clocks and the callback's addresses."""
        now = datetime.now(UTC)
        kind, stamp = message.timestamp()
        sent_at = (
            datetime.fromtimestamp(stamp / 1000, UTC) if kind != TIMESTAMP_NOT_AVAILABLE else now
        )
        settings = self.settings
        return CommandContext(
            now=now,
            sent_at=sent_at,
            callback_addresses=await self._callback_addresses(parsed),
            allow_networks=settings.callback_allow_networks,
            deny_networks=settings.callback_deny_networks,
            secrets_enabled=self.rules.box is not None,
        )

    async def _callback_addresses(self, command: Command | Rejection) -> list[Any]:
        if not isinstance(command, CreateCommand | UpdateCommand) or isinstance(
            command, CpsCommand
        ):
            return []
        settings = self.settings
        if not (settings.callback_allow_networks or settings.callback_deny_networks):
            return []
        host, port = url_host_port(command.subscription.callback_url)
        timeout_s = 0.1 if is_ip_literal(host) else RESOLVE_TIMEOUT_S
        return list(await resolve(host, port, timeout_s))

    # --- assignment and restore ----------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        refuse_foreign_assignment(
            (tp.topic for tp in partitions),
            [self.settings.commands_topic, self.settings.deltas_topic],
            "DELTAWATCH_NOTIFIER_GROUP_ID",
        )
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
                for key in self.rules.forget_partitions(partitions):
                    self.deliveries.cancel(key)
            else:
                await self._restore(sorted(set(partitions) - self.rules.owned))
        if events and not self._not_at_end:
            self.health.met("caught-up")

    async def _restore(self, partitions: list[int]) -> None:
        if partitions:
            started = time.monotonic()
            subscriptions, outbox = await asyncio.gather(
                *(
                    asyncio.to_thread(
                        read_table, self.settings, topic, partitions, client_id=RESTORE_CLIENT_ID
                    )
                    for topic in (self.settings.subscriptions_topic, self.rules.outbox_topic)
                )
            )
            jobs = restore_partitions(self.rules, partitions, subscriptions, outbox)
            metrics.SUBSCRIPTIONS.set(len(self.rules.table.subscriptions))
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


def where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (never None for consumed ones)."""
    return message.topic() or "", message.partition() or 0, message.offset() or 0
