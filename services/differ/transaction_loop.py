"""The differ's Kafka edge: consume → diff → deltas + changelog + DLQ + offsets, one transaction.

Exactly-once is :mod:`deltawatch.processing_core`'s rule applied to the differ: a batch's
deltas and synced notices, the changelog records of the snapshot state it produced, its dead
letters and the consumer offsets past it are committed by one
:meth:`~deltawatch.processing_core.TransactionalCore.commit`, and the in-memory snapshot only
takes the batch's state (``BatchOutcome.commit_to``) after that commit returned ``True``. On an
abort the core rewinds the batch's partitions and the outcome is dropped, so the same records
are diffed again against the same snapshot: the same events, the same ids. A fatal error (fenced
by a newer differ with our ``transactional.id``) ends :meth:`DifferLoop.run` with exit code 1
and one error line; a crash is recovered by the restart, which restores every assigned
partition's snapshot from the changelog (:mod:`services.differ.owned_partitions`) before any of
its records is processed.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Message, TopicCollection

from deltawatch.avro_serde import AvroDecodeError, AvroSerde
from deltawatch.cloud_events import KafkaRecord, utc_now
from deltawatch.compacted_table import TableReadInterrupted
from deltawatch.health import HealthState
from deltawatch.kafka_clients import make_admin, make_consumer, make_producer, make_reader
from deltawatch.latency import elapsed_s, record_time_s
from deltawatch.logs import get_logger
from deltawatch.member_identity import ForeignAssignment, host_name, member_client_id
from deltawatch.processing_core import FatalKafkaError, OutputRecord, TransactionalCore
from deltawatch.resource_identity import EventType
from deltawatch.settings import DifferSettings
from deltawatch.shutdown import ShutdownFlag
from services.differ import metrics
from services.differ.changelog_codec import ChangelogRecord, encode_epochs, encode_outcome
from services.differ.dead_letter import dead_letter_record
from services.differ.delta_events import delta_record, heartbeat_record, synced_record
from services.differ.leader_fence import BatchFence
from services.differ.local_state import LocalStateDb, LocalStateError
from services.differ.long_lived_heap import WriteCountFreeze
from services.differ.owned_partitions import OwnedPartitions
from services.differ.resource_diff import BatchOutcome, apply_batch
from services.differ.resource_event import PoisonRecord, ResourceEvent, parse_resource_event

READINESS = ["kafka", "assigned", "restored", "caught-up"]
TRANSACTION_TIMEOUT_S = 30.0
# After the first record of a batch, how long to gather more: a transaction costs 5-10 ms of
# broker and client CPU, so under load batches must fill up (a transaction per record at
# 100 changes/s overloads a 2-core machine: p50 126 ms instead of 39), while a lone change
# should not wait. So a batch lingers only when the loop is busy: the previous turn had records
# and this turn's first record came within QUIET_S of the poll (measured from the poll, not
# from the previous batch, so that a batch taking longer than QUIET_S to process does not
# turn lingering off under heavy load). After a quiet spell a change goes at once, which took
# 20 ms off this hop at 10 changes/s.
BATCH_LINGER_S = 0.02
QUIET_S = 0.05


def member_id_base(settings: DifferSettings) -> str:
    """``<group-id>-<cluster>-<hostname>``: stable across restarts of one pod / host.

    A StatefulSet gives each replica a stable hostname, so a restarted replica takes its own
    predecessor's id and fences it at once; a second replica on the same host claims
    ``<base>-1`` (:mod:`deltawatch.member_identity`).
    """
    return f"{settings.group_id}-{settings.cluster}-{host_name()}"


@dataclass(frozen=True)
class DifferTopics:
    resource_events: str
    deltas: str
    changelog: str
    dlq: str


def state_identity(settings: DifferSettings, topics: DifferTopics) -> dict[str, str]:
    """What the local state belongs to: the group, and the input and changelog topics by name
    and by topic id (a deleted and recreated topic has a new id, and offsets from zero)."""
    identity = {
        "group": settings.group_id,
        "input": topics.resource_events,
        "changelog": topics.changelog,
    }
    admin = make_admin(settings)
    names = [topics.resource_events, topics.changelog]
    for name, future in admin.describe_topics(TopicCollection(names)).items():
        try:
            identity[f"id:{name}"] = str(future.result(timeout=10).topic_id)
        except (KafkaException, TimeoutError) as exc:
            # No id: the identity matches no stored one, and the state is rebuilt.
            identity[f"id:{name}"] = f"unknown ({exc})"
    return identity


class DifferLoop:
    def __init__(
        self,
        settings: DifferSettings,
        topics: DifferTopics,
        health: HealthState,
        shutdown: ShutdownFlag,
        member_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.health = health
        self.shutdown = shutdown
        self.log = get_logger("differ")
        # One id for both: the restarted differ fences its predecessor's transaction and takes
        # its partitions back as the same static member, with no rebalance to wait for.
        member_id = member_id or settings.transactional_id or member_id_base(settings)
        self.transactional_id = member_id
        self.local = _local_state(settings, topics, member_id)
        self.serde = AvroSerde.from_file(
            "resource-event.avsc", topics.resource_events, settings.schema_registry_url
        )
        # Watchers of the release before leader election still write the schema without it.
        self.serde.accept_earlier_writer(("leader_epoch", "leader_lease"))
        self._fenced_logged: set[tuple[int, tuple[str, str], int]] = set()
        producer = make_producer(
            settings,
            transactional_id=self.transactional_id,
            client_id="deltawatch-differ",
            **{"transaction.timeout.ms": int(TRANSACTION_TIMEOUT_S * 2000)},
        )
        self.consumer = make_consumer(
            settings,
            settings.group_id,
            client_id=member_client_id("deltawatch-differ"),
            **dict[str, Any]({"enable.partition.eof": True, "group.instance.id": member_id}),
        )
        self.core = TransactionalCore(
            producer,
            self.consumer,
            log=self.log,
            transactions=metrics.TRANSACTIONS,
            transaction_timeout_s=TRANSACTION_TIMEOUT_S,
        )
        self.heap_freeze = WriteCountFreeze()
        self.reader = make_reader(settings, client_id="deltawatch-differ-restore")
        self.owned = OwnedPartitions(
            topics.resource_events,
            topics.changelog,
            self.reader,
            health,
            shutdown,
            self.log,
            legacy_cluster=settings.cluster,
            local=self.local,
            state_cleanup_delay_s=settings.state_cleanup_delay_s,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Process until shutdown; the exit code (0 on a clean stop)."""
        try:
            self.core.init_transactions()
        except FatalKafkaError as exc:
            self.log.error("cannot initialise transactions", error=str(exc))
            return 1
        self.log.info("transactions initialised", transactional_id=self.transactional_id)
        self.consumer.subscribe(
            [self.topics.resource_events],
            on_assign=self.owned.on_assign,
            on_revoke=self.owned.on_revoke,
            on_lost=self.owned.on_lost,
        )
        code = 0
        busy = False
        try:
            while not self.shutdown.requested:
                self.health.beat()
                messages = self._consume(busy)
                records = self._records(messages)
                busy = bool(records)  # end-of-partition events alone do not make the loop busy
                if records:
                    self._process(records)
                self._heartbeats()
                self.owned.check_caught_up(self.consumer)
                self.owned.observe_lag(self.consumer)
                self.owned.drop_unowned_state()
        except TableReadInterrupted:
            self.log.info("restore interrupted by shutdown")
        except FatalKafkaError as exc:
            self.log.error("fatal Kafka error, exiting", error=str(exc))
            code = 1
        except LocalStateError as exc:
            self.log.error("local state unusable, exiting", error=str(exc))
            code = 1
        except ForeignAssignment as exc:
            self.log.error("assignment of other topics, exiting", error=str(exc))
            code = 2
        finally:
            self.health.stopping()
            self.core.close()
            self.reader.close()
            if self.local is not None:
                self.local.close()
        return code

    # -- the batch ---------------------------------------------------------------------------

    def _consume(self, busy: bool) -> list[Message]:
        """Wait up to 0.2 s for a record, then gather more for a while only if busy: the last
        turn had records and this one's first record came within QUIET_S of asking for it."""
        busy_until = time.monotonic() + QUIET_S if busy else 0.0
        first = self.consumer.poll(0.2)
        if first is None or self.settings.batch_max <= 1:
            return [] if first is None else [first]
        linger_s = BATCH_LINGER_S if time.monotonic() < busy_until else 0.0
        more = self.consumer.consume(num_messages=self.settings.batch_max - 1, timeout=linger_s)
        return [first, *more]

    def _records(self, messages: list[Message]) -> list[Message]:
        """The records of owned partitions (a revoked partition's may still be in flight)."""
        usable = self.core.usable(messages, on_end=self.owned.at_end)
        return [message for message in usable if _partition(message) in self.owned.assigned]

    def _process(self, messages: list[Message]) -> None:
        batches: dict[int, list[Message]] = defaultdict(list)
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            partition = _partition(message)
            batches[partition].append(message)
            offsets[(self.topics.resource_events, partition)] = _offset(message) + 1
        dead_letters: list[KafkaRecord] = []
        types: Counter[EventType] = Counter()
        store = self.owned.store
        fences = {p: BatchFence(store.get(p).leader_epochs) for p in batches}
        outcomes = {
            p: apply_batch(
                store.get(p), fences[p].admitted(self._events(batch, dead_letters, types))
            )
            for p, batch in batches.items()
        }
        for event_type, count in types.items():
            metrics.INPUT_EVENTS.labels(event_type.value).inc(count)
        metrics.BATCH_SIZE.observe(len(messages))
        changelog = {
            p: [*encode_outcome(outcome), *encode_epochs(fences[p].writes)]
            for p, outcome in outcomes.items()
        }
        if self.core.commit(self._outputs(outcomes, changelog, dead_letters), offsets):
            for partition, outcome in outcomes.items():
                snapshot = store.get(partition)
                fences[partition].commit_to(snapshot.leader_epochs)
                # Local state (if any) follows the committed transaction, never precedes it.
                committed = offsets[(self.topics.resource_events, partition)]
                added = outcome.commit_to(snapshot, changelog[partition], committed)
                self.owned.add_resources(partition, added)
                self._account(partition, outcome)
                self._account_fenced(partition, fences[partition])
            metrics.DEAD_LETTERS.inc(len(dead_letters))
            self.heap_freeze.written(sum(len(o.resource_writes) for o in outcomes.values()))
            self.owned.refresh_gauges()
            _observe_latency(messages, time.time())

    def _events(
        self,
        messages: list[Message],
        dead_letters: list[KafkaRecord],
        types: Counter[EventType],
    ) -> Iterator[ResourceEvent]:
        """Decode lazily: each parsed object is garbage as soon as the diff has used it.

        Parsing the whole batch first kept thousands of freshly parsed objects alive at once,
        which promoted them into the garbage collector's older generations and made its full
        collections (which also walk every snapshot entry) a quarter of the differ's CPU.
        """
        for message in messages:
            try:
                event = parse_resource_event(self.serde.decode(message.value()))
            except (AvroDecodeError, PoisonRecord) as exc:
                reason = str(exc)
                self.log.warning(
                    "poison record to DLQ",
                    partition=_partition(message),
                    offset=_offset(message),
                    reason=reason,
                )
                dead_letters.append(dead_letter_record(message, reason, utc_now()))
                continue
            types[event.type] += 1
            yield event

    def _outputs(
        self,
        outcomes: dict[int, BatchOutcome],
        changelog: dict[int, list[ChangelogRecord]],
        dead_letters: list[KafkaRecord],
    ) -> Iterator[OutputRecord]:
        """What the batch's transaction writes; partition *p*'s output goes to partition *p*."""
        deltas = self.topics.deltas
        for partition, outcome in outcomes.items():
            for delta in outcome.deltas:
                yield _output(deltas, partition, delta_record(delta))
            for notice in outcome.synced:
                yield _output(deltas, partition, synced_record(notice))
            for key, value in changelog[partition]:
                yield OutputRecord(self.topics.changelog, partition, key, value)
        for record in dead_letters:
            yield _output(self.topics.dlq, None, record)

    def _account(self, partition: int, outcome: BatchOutcome) -> None:
        """Logs and metrics of a committed outcome."""
        for warning in outcome.warnings:
            self.log.warning(warning, partition=partition)
        changes = dict.fromkeys(("created", "deleted", "modified"), 0)
        for delta in outcome.deltas:
            counts = delta.counts()
            for change, count in counts.items():  # Counter.update cost more per delta
                changes[change] += count
            self.log.debug(
                "delta",
                instance_id=delta.instance_id,
                cluster=delta.cluster,
                sequence=delta.sequence,
                **counts,
            )
        if outcome.deltas:
            metrics.EVENTS_PRODUCED.labels("delta").inc(len(outcome.deltas))
        for change, count in changes.items():
            if count:
                metrics.RESOURCE_CHANGES.labels(change).inc(count)
        for notice in outcome.synced:
            metrics.EVENTS_PRODUCED.labels("synced").inc()
            self.log.info(
                "synced",
                instance_id=notice.instance_id,
                cluster=notice.scope.cluster,
                kind=notice.scope.kind,
                list_id=notice.list_id,
            )
        if outcome.deltas or outcome.synced:
            self.owned.last_output[partition] = time.monotonic()

    def _account_fenced(self, partition: int, fence: BatchFence) -> None:
        """Count what the leader fence dropped; one info line per partition, Lease and epoch."""
        for (fenced, epoch), count in fence.dropped.items():
            metrics.FENCED_EVENTS.inc(count)
            if (partition, fenced, epoch) in self._fenced_logged:
                continue
            self._fenced_logged.add((partition, fenced, epoch))
            self.log.info(
                "events of a deposed watcher leader dropped",
                partition=partition,
                cluster=fenced[0],
                lease=fenced[1],
                leader_epoch=epoch,
                highest_epoch=fence.highest(fenced),
                events=count,
            )

    # -- idle work ---------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        now = time.monotonic()
        due = self.owned.heartbeat_due(now, self.settings.heartbeat_s)
        if not due:
            return
        moment = utc_now()
        cluster, source = self.settings.cluster, self.settings.source
        records = [
            _output(
                self.topics.deltas,
                partition,
                heartbeat_record(partition=partition, time=moment, cluster=cluster, source=source),
            )
            for partition in due
        ]
        if not self.core.commit(records, {}):
            return
        metrics.EVENTS_PRODUCED.labels("heartbeat").inc(len(due))
        for partition in due:
            self.owned.last_output[partition] = now


def _observe_latency(messages: list[Message], now: float) -> None:
    """Each committed input record's hop, from its record timestamp to the commit."""
    for message in messages:
        stamp = record_time_s(message)
        if stamp is not None:
            metrics.DELTA_LATENCY.observe(elapsed_s(stamp, now))


def _output(topic: str, partition: int | None, record: KafkaRecord) -> OutputRecord:
    return OutputRecord(topic, partition, record.key, record.value, record.headers)


def _local_state(
    settings: DifferSettings, topics: DifferTopics, member_id: str
) -> LocalStateDb | None:
    """``DELTAWATCH_DIFFER_STATE_DIR``'s database, one per member id: the flock-claimed id
    keeps two processes out of one database."""
    if settings.state_dir is None:
        return None
    return LocalStateDb(settings.state_dir / member_id, state_identity(settings, topics))


def _partition(message: Message) -> int:
    partition = message.partition()
    return -1 if partition is None else partition


def _offset(message: Message) -> int:
    offset = message.offset()
    return -1 if offset is None else offset
