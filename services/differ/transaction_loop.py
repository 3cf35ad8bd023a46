"""The differ's Kafka edge: consume → diff → deltas + changelog + DLQ + offsets, one transaction.

Exactly-once rests on one rule: a batch's deltas, the changelog records of the state it
produced, its dead letters and the consumer offsets past it are committed in **one** Kafka
transaction, and the in-memory snapshot only takes the batch's state after that commit.
Whatever happens in between (abort, crash, fencing) leaves the three in agreement:

* abortable error → abort, drop the batch's outcome (the snapshot never saw it), seek the
  batch's partitions back to their committed offsets and process them again;
* crash / SIGKILL → the open transaction is aborted when a process with the same
  ``transactional.id`` calls ``init_transactions`` (or times out); the restart restores the
  snapshot from the changelog and resumes from the committed offsets: read_committed consumers
  of the deltas never see the lost batch, and the re-run produces the same events, same ids;
* fatal error (fenced by a newer process with our ``transactional.id``) → one error line and
  exit 1; the newer process owns the partitions. A fatal producer is never flushed at close:
  its queued records belong to a transaction that can only be aborted, and flushing it raises.

Callbacks of the consumer run only inside ``consume()`` and no transaction is ever open across
a ``consume()`` call, so a revoke always finds the previous batch committed (the cooperative
"commit-or-abort on revoke" holds by construction); the revoked partitions' snapshots are
dropped and assigned partitions are restored *inside* ``on_assign``, before any of their
records can be returned.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from deltawatch.avro_serde import AvroDecodeError, AvroSerde
from deltawatch.call_deadline import call_deadline
from deltawatch.cloud_events import KafkaRecord, utc_now
from deltawatch.compacted_table import TableReadInterrupted
from deltawatch.health import HealthState
from deltawatch.kafka_clients import consume_available, make_consumer, make_producer, make_reader
from deltawatch.logs import get_logger
from deltawatch.resource_identity import EventType
from deltawatch.settings import DifferSettings
from deltawatch.shutdown import ShutdownFlag
from services.differ import metrics
from services.differ.changelog_codec import encode_outcome
from services.differ.dead_letter import dead_letter_value
from services.differ.delta_events import delta_record, heartbeat_record, synced_record
from services.differ.resource_diff import BatchOutcome, apply_batch
from services.differ.resource_event import PoisonRecord, ResourceEvent, parse_resource_event
from services.differ.restore import restore_partition
from services.differ.snapshot import SnapshotStore

READINESS = ["kafka", "assigned", "restored", "caught-up"]
TRANSACTION_TIMEOUT_S = 30.0
CALL_DEADLINE_S = TRANSACTION_TIMEOUT_S + 15.0  # beyond it the call hangs (see call_deadline)
LAG_EVERY_S = 5.0
# After the first record of a batch, how long to gather more: a transaction costs 5-10 ms, so
# under load batches should fill up, while a lone change should not wait long.
BATCH_LINGER_S = 0.02


class FatalKafkaError(Exception):
    """The producer cannot continue (fenced, or a fatal broker error); the process must exit."""


def default_transactional_id(settings: DifferSettings) -> str:
    """``<group-id>-<cluster>-<hostname>``: stable across restarts of one pod / host.

    A StatefulSet gives each replica a stable hostname, so a restarted replica fences its own
    predecessor at once. Two replicas on one host must set ``DELTAWATCH_TRANSACTIONAL_ID``.
    """
    return f"{settings.group_id}-{settings.cluster}-{socket.gethostname()}"


@dataclass(frozen=True)
class DifferTopics:
    resource_events: str
    deltas: str
    changelog: str
    dlq: str


class DifferLoop:
    def __init__(
        self,
        settings: DifferSettings,
        topics: DifferTopics,
        health: HealthState,
        shutdown: ShutdownFlag,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.health = health
        self.shutdown = shutdown
        self.log = get_logger("differ")
        self.transactional_id = settings.transactional_id or default_transactional_id(settings)
        self.serde = AvroSerde.from_file(
            "resource-event.avsc", topics.resource_events, settings.schema_registry_url
        )
        self.store = SnapshotStore()
        self.producer: Producer = make_producer(
            settings,
            transactional_id=self.transactional_id,
            client_id="deltawatch-differ",
            **{"transaction.timeout.ms": int(TRANSACTION_TIMEOUT_S * 2000)},
        )
        self.consumer: Consumer = make_consumer(
            settings,
            settings.group_id,
            client_id="deltawatch-differ",
            **{"enable.partition.eof": True},
        )
        self.reader: Consumer = make_reader(settings, client_id="deltawatch-differ-restore")
        self.assigned: set[int] = set()
        self.catch_up: dict[int, int] | None = None
        self.last_output: dict[int, float] = {}
        self.resource_counts: dict[int, int] = {}
        self._next_lag = 0.0
        self._producer_fatal = False

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Process until shutdown; the exit code (0 on a clean stop)."""
        try:
            self.producer.init_transactions(TRANSACTION_TIMEOUT_S)
        except KafkaException as exc:
            self.log.error("cannot initialise transactions", error=str(exc))
            return 1
        self.log.info("transactions initialised", transactional_id=self.transactional_id)
        self.consumer.subscribe(
            [self.topics.resource_events],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        code = 0
        try:
            while not self.shutdown.requested:
                self.health.beat()
                messages = consume_available(
                    self.consumer, self.settings.batch_max, wait_s=0.2, linger_s=BATCH_LINGER_S
                )
                records = self._records(messages)
                if records:
                    self._process(records)
                self._heartbeats()
                self._check_caught_up()
                self._observe_lag()
        except TableReadInterrupted:
            self.log.info("restore interrupted by shutdown")
        except FatalKafkaError as exc:
            self.log.error("fatal Kafka error, exiting", error=str(exc))
            self._producer_fatal = True
            code = 1
        finally:
            self.health.stopping()
            self._close()
        return code

    def _close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError, TableReadInterrupted) as exc:
            self.log.warning("consumer close failed", error=str(exc))
        self.reader.close()
        if self._producer_fatal:
            return  # nothing it holds may be delivered, and flush() would raise
        try:
            self.producer.flush(5)
        except KafkaException as exc:
            self.log.warning("producer flush at close failed", error=str(exc))

    # -- rebalance ---------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.unmet("restored")
        for tp in partitions:
            result = restore_partition(
                self.reader,
                self.topics.changelog,
                tp.partition,
                stop_requested=lambda: self.shutdown.requested,
            )
            self.store.put(tp.partition, result.snapshot)
            self.resource_counts[tp.partition] = result.snapshot.resource_count()
            self.assigned.add(tp.partition)
            self.last_output[tp.partition] = time.monotonic()
            metrics.RESTORE_SECONDS.observe(result.seconds)
            metrics.RESTORED_RECORDS.inc(result.records)
            self.log.info(
                "partition restored",
                partition=tp.partition,
                records=result.records,
                resources=result.snapshot.resource_count(),
                seconds=round(result.seconds, 3),
            )
        if self.catch_up is None:
            self.catch_up = self._end_offsets(consumer, partitions)
        self._refresh_gauges()
        self.health.met("assigned")
        self.health.met("restored")

    def _end_offsets(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[int, int]:
        """End offsets found at start, minus the partitions already committed up to them."""
        targets: dict[int, int] = {}
        committed = {
            tp.partition: tp.offset
            for tp in consumer.committed(
                [TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=10
            )
        }
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = committed.get(tp.partition, -1)
            if high > max(low, start):
                targets[tp.partition] = high
        return targets

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions, "revoked")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions, "lost")

    def _forget(self, partitions: list[TopicPartition], why: str) -> None:
        for tp in partitions:
            self.store.drop(tp.partition)
            self.assigned.discard(tp.partition)
            self.last_output.pop(tp.partition, None)
            if self.catch_up is not None:
                self.catch_up.pop(tp.partition, None)
            self.resource_counts.pop(tp.partition, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(str(tp.partition))
        self._refresh_gauges()
        self.log.info(why, partitions=[tp.partition for tp in partitions])

    # -- the batch ---------------------------------------------------------------------------

    def _records(self, messages: list[Message]) -> list[Message]:
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if self.catch_up is not None:
                        self.catch_up.pop(_partition(message), None)
                elif error.fatal() or error.code() == KafkaError._FATAL:
                    # A consumer reports a fatal error as code _FATAL with the fatal flag
                    # unset; polling on would never fetch again, so exit and be restarted.
                    raise FatalKafkaError(str(error))
                else:
                    self.log.warning("consumer error", error=str(error))
                continue
            if _partition(message) in self.assigned:
                records.append(message)
        return records

    def _process(self, messages: list[Message]) -> None:
        batches: dict[int, list[Message]] = defaultdict(list)
        next_offsets: dict[int, int] = {}
        for message in messages:
            partition = _partition(message)
            batches[partition].append(message)
            next_offsets[partition] = _offset(message) + 1
        dead_letters: list[KafkaRecord] = []
        types: Counter[EventType] = Counter()
        outcomes = {
            p: apply_batch(self.store.get(p), self._events(batch, dead_letters, types))
            for p, batch in batches.items()
        }
        for event_type, count in types.items():
            metrics.INPUT_EVENTS.labels(event_type.value).inc(count)
        metrics.BATCH_SIZE.observe(len(messages))
        if self._transact(outcomes, dead_letters, next_offsets):
            for partition, outcome in outcomes.items():
                added = outcome.commit_to(self.store.get(partition))
                self.resource_counts[partition] = self.resource_counts.get(partition, 0) + added
                self._account(partition, outcome)
            metrics.DEAD_LETTERS.inc(len(dead_letters))
            self._refresh_gauges()

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
                dead_letters.append(self._dead_letter(message, str(exc)))
                continue
            types[event.type] += 1
            yield event

    def _dead_letter(self, message: Message, reason: str) -> KafkaRecord:
        partition, offset = _partition(message), _offset(message)
        self.log.warning("poison record to DLQ", partition=partition, offset=offset, reason=reason)
        value = dead_letter_value(
            reason=reason,
            topic=message.topic() or "",
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            refused_at=utc_now(),
        )
        return KafkaRecord(message.key(), value, [("partition", str(partition).encode())])

    def _account(self, partition: int, outcome: BatchOutcome) -> None:
        for warning in outcome.warnings:
            self.log.warning(warning, partition=partition)
        changes: Counter[str] = Counter()
        for delta in outcome.deltas:
            counts = delta.counts()
            changes.update(counts)
            self.log.debug(
                "delta", instance_id=delta.instance_id, sequence=delta.sequence, **counts
            )
        if outcome.deltas:
            metrics.EVENTS_PRODUCED.labels("delta").inc(len(outcome.deltas))
        for change, count in changes.items():
            metrics.RESOURCE_CHANGES.labels(change).inc(count)
        for notice in outcome.synced:
            metrics.EVENTS_PRODUCED.labels("synced").inc()
            self.log.info(
                "synced",
                instance_id=notice.instance_id,
                kind=notice.scope.kind,
                list_id=notice.list_id,
            )
        if outcome.deltas or outcome.synced:
            self.last_output[partition] = time.monotonic()

    def _transact(
        self,
        outcomes: dict[int, BatchOutcome],
        dead_letters: list[KafkaRecord],
        next_offsets: dict[int, int],
    ) -> bool:
        """One transaction for the whole batch; ``False`` when it was aborted and rewound."""
        settings = self.settings
        try:
            self.producer.begin_transaction()
            for partition, outcome in outcomes.items():
                for delta in outcome.deltas:
                    record = delta_record(delta, cluster=settings.cluster, source=settings.source)
                    self._produce(self.topics.deltas, partition, record)
                for notice in outcome.synced:
                    record = synced_record(notice, cluster=settings.cluster, source=settings.source)
                    self._produce(self.topics.deltas, partition, record)
                for key, value in encode_outcome(outcome):
                    self._send(self.topics.changelog, partition, key, value, [])
            for record in dead_letters:
                self._produce(self.topics.dlq, None, record)
            offsets = [
                TopicPartition(self.topics.resource_events, p, o) for p, o in next_offsets.items()
            ]
            with call_deadline(CALL_DEADLINE_S, "send_offsets_to_transaction", self.log):
                self.producer.send_offsets_to_transaction(
                    offsets, self.consumer.consumer_group_metadata(), TRANSACTION_TIMEOUT_S
                )
            self._commit()
        except KafkaException as exc:
            self._abort_and_rewind(exc, list(next_offsets))
            return False
        metrics.TRANSACTIONS.labels("committed").inc()
        return True

    def _produce(self, topic: str, partition: int | None, record: KafkaRecord) -> None:
        self._send(topic, partition, record.key, record.value, record.headers)

    def _send(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        header_list: list[tuple[str, str | bytes | None]] = list(headers)
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, key=key, value=value, headers=header_list)
                else:
                    self.producer.produce(
                        topic, key=key, value=value, headers=header_list, partition=partition
                    )
                return
            except BufferError:
                self.producer.poll(0.05)

    def _commit(self) -> None:
        while True:
            try:
                self.producer.commit_transaction(TRANSACTION_TIMEOUT_S)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() and not error.txn_requires_abort():
                    continue
                raise

    def _abort_and_rewind(self, exc: KafkaException, partitions: list[int]) -> None:
        error = exc.args[0]
        if error.fatal():
            raise FatalKafkaError(str(error)) from exc
        # produce() on a producer that has just turned fatal (fenced) raises a non-fatal-flagged
        # _FATAL "Local: Fatal error"; abort_transaction() below then raises the real cause.
        producer_fatal = error.code() == KafkaError._FATAL
        if not producer_fatal:
            self.log.warning("transaction failed, aborting and rewinding", error=str(error))
        metrics.TRANSACTIONS.labels("aborted").inc()
        try:
            self.producer.abort_transaction(TRANSACTION_TIMEOUT_S)
        except KafkaException as abort_exc:
            if abort_exc.args[0].fatal():
                raise FatalKafkaError(str(abort_exc.args[0])) from abort_exc
            self.log.warning("abort failed", error=str(abort_exc))
        if producer_fatal:
            raise FatalKafkaError(str(error)) from exc
        self._rewind(partitions)

    def _rewind(self, partitions: list[int]) -> None:
        """Seek the batch's partitions back to their committed offsets (state is untouched)."""
        owned = [p for p in partitions if p in self.assigned]
        if not owned:
            return
        committed = self.consumer.committed(
            [TopicPartition(self.topics.resource_events, p) for p in owned], timeout=30
        )
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # -- idle work ---------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        now = time.monotonic()
        due = [
            p
            for p in sorted(self.assigned)
            if now - self.last_output.get(p, now) >= self.settings.heartbeat_s
        ]
        if not due:
            return
        moment = utc_now()
        try:
            self.producer.begin_transaction()
            for partition in due:
                record = heartbeat_record(
                    partition=partition,
                    time=moment,
                    cluster=self.settings.cluster,
                    source=self.settings.source,
                )
                self._produce(self.topics.deltas, partition, record)
            self._commit()
        except KafkaException as exc:
            self._abort_and_rewind(exc, [])
            return
        metrics.TRANSACTIONS.labels("committed").inc()
        metrics.EVENTS_PRODUCED.labels("heartbeat").inc(len(due))
        for partition in due:
            self.last_output[partition] = now

    def _check_caught_up(self) -> None:
        if self.catch_up is None:
            return
        if self.catch_up:
            positions = self.consumer.position(
                [TopicPartition(self.topics.resource_events, p) for p in self.catch_up]
            )
            for tp in positions:
                if tp.offset >= self.catch_up.get(tp.partition, 0):
                    self.catch_up.pop(tp.partition, None)
        if not self.catch_up:
            self.health.met("caught-up")

    def _observe_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag or not self.assigned:
            return
        self._next_lag = now + LAG_EVERY_S
        tps = [TopicPartition(self.topics.resource_events, p) for p in sorted(self.assigned)]
        for tp in self.consumer.position(tps):
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, high - tp.offset))

    def _refresh_gauges(self) -> None:
        metrics.TRACKED_RESOURCES.set(sum(self.resource_counts.values()))
        metrics.TRACKED_INSTANCES.set(self.store.instance_count())
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))


def _partition(message: Message) -> int:
    partition = message.partition()
    return -1 if partition is None else partition


def _offset(message: Message) -> int:
    offset = message.offset()
    return -1 if offset is None else offset
