"""The transactional processing core: outputs + state + input offsets in one Kafka transaction.

Every deltawatch worker that turns input records into output records (the differ, the notifier)
keeps its exactly-once promise with the same rule, implemented here once: a batch's output
records, the changelog records of the state it produced and the consumer offsets past its input
are committed in **one** Kafka transaction (:meth:`TransactionalCore.commit`), and the worker's
in-memory state only takes the batch's result after that commit returned ``True`` (the differ's
``BatchOutcome.commit_to``). Whatever happens in between (abort, crash, fencing) leaves outputs,
state and offsets in agreement:

* abortable error (a produce the broker refused, a coordinator that moved …) → the transaction
  is aborted and nothing of it is ever visible to ``read_committed`` readers. With
  ``rewind_on_abort=True`` the batch's input partitions are then sought back to their committed
  offsets and ``commit`` returns ``False``: the caller drops the batch's outcome (its state never
  saw it) and processes the same records again. With ``rewind_on_abort=False`` (a worker whose
  state cannot simply skip a batch's effects) :class:`TransactionAbandoned` is raised instead and
  the caller exits, so that the restart restores the committed state;
* crash / SIGKILL → the open transaction is aborted when a process with the same
  ``transactional.id`` calls ``init_transactions`` (or when it times out); the restart restores
  its state from its changelog and resumes from the committed offsets: the lost batch was never
  visible, and processing it again produces the same records;
* fatal error (fenced by a newer process with our ``transactional.id``, or a fatal broker or
  consumer error) → :class:`FatalKafkaError`; the worker logs one line and exits 1, the newer
  process owns the partitions. A fatal producer is never flushed at :meth:`close`: its queued
  records belong to a transaction that can only be aborted, and flushing it raises.

Consumer callbacks (assign, revoke, lost) run only inside ``consume()``/``poll()``, and
``commit`` opens and closes (commits or aborts) its transaction within one call, so no
transaction is ever open across a ``consume()``: a revoke always finds the previous batch
committed or aborted. The cooperative "commit-or-abort on revoke" rule thus holds by
construction, and the callbacks may drop the revoked partitions' state and restore assigned
partitions before any of their records is returned. Should anything but a Kafka error escape
while a transaction is open (a bug in the caller's record generator), the transaction is
aborted before the exception propagates, so the rule holds even then.

``send_offsets_to_transaction`` can block forever when the group coordinator goes away during
the call (confluentinc/librdkafka#5456), so it runs under :func:`deltawatch.call_deadline.
call_deadline`: past the deadline the process exits 1, the same recovery as a fatal error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, NamedTuple, cast

import prometheus_client
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from deltawatch.call_deadline import call_deadline
from deltawatch.kafka_clients import produce_when_room

DEADLINE_MARGIN_S = 15.0
"""How much longer than its own timeout a Kafka call may take before it counts as hung."""


class FatalKafkaError(Exception):
    """Fenced / fatal: the process must exit 1 with one clear line."""


class TransactionAbandoned(Exception):
    """Abortable failure in a core built with ``rewind_on_abort=False``.

    The transaction was aborted; the caller must exit to restore the committed state.
    """


class OutputRecord(NamedTuple):
    """One record a transaction writes.

    A named tuple rather than a frozen dataclass: a batch writes thousands of them, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost more than producing."""

    topic: str
    partition: int | None
    """``None``: the producer's partitioner chooses."""
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    timestamp_ms: int = 0
    """0: the producer stamps it."""


def transaction_counter(prefix: str) -> prometheus_client.Counter:
    """``<prefix>_transactions_total{outcome=committed|aborted}``; create once per process."""
    return prometheus_client.Counter(
        f"{prefix}_transactions_total", "Kafka transactions, by outcome", ["outcome"]
    )


@dataclass(eq=False)
class TransactionalCore:
    """A transactional producer and the consumer whose offsets its transactions commit."""

    producer: Producer
    consumer: Consumer
    _: KW_ONLY
    log: Any
    transactions: prometheus_client.Counter
    rewind_on_abort: bool = True
    transaction_timeout_s: float = 30.0
    fatal: bool = field(default=False, init=False)
    """Set once a :class:`FatalKafkaError` was raised: the producer must not be flushed."""

    def __post_init__(self) -> None:
        self._committed = self.transactions.labels("committed")
        self._aborted = self.transactions.labels("aborted")

    def init_transactions(self) -> None:
        """Fence older processes with our ``transactional.id`` and abort their transaction."""
        try:
            self.producer.init_transactions(self.transaction_timeout_s)
        except KafkaException as exc:
            raise self._fatal(exc.args[0]) from exc

    def usable(
        self, messages: list[Message], on_end: Callable[[str, int], None] | None = None
    ) -> list[Message]:
        """The records among ``messages``: errors are dropped, reported or raised.

        End of partition → ``on_end(topic, partition)``; a fatal consumer error →
        :class:`FatalKafkaError` (a consumer reports it as code ``_FATAL`` with the fatal flag
        unset, and polling on would never fetch again); any other error → a warning.
        """
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                if on_end is not None:
                    on_end(message.topic() or "", _number(message.partition()))
            elif error.fatal() or error.code() == KafkaError._FATAL:
                raise self._fatal(error)
            else:
                self.log.warning("consumer error", error=str(error))
        return records

    def commit(
        self, records: Iterable[OutputRecord], offsets: Mapping[tuple[str, int], int]
    ) -> bool:
        """Write ``records`` and commit ``offsets`` (next offset per input partition) atomically.

        ``True`` once committed. On an abortable error the transaction is aborted, then either
        the offsets' partitions are sought back to their committed offsets and ``False`` is
        returned, or (``rewind_on_abort=False``) :class:`TransactionAbandoned` is raised.
        Fatal errors raise :class:`FatalKafkaError`.
        """
        try:
            self.producer.begin_transaction()
            for record in records:
                self._produce(record)
            if offsets:
                self._send_offsets(offsets)
            self._commit_transaction()
        except KafkaException as exc:
            self._abort(exc)
            if not self.rewind_on_abort:
                raise TransactionAbandoned(str(exc.args[0])) from exc
            self._rewind(offsets)
            return False
        except Exception:
            self._abort_after_bug()
            raise
        self._committed.inc()
        return True

    def close(self) -> None:
        """Leave the group; deliver what the producer still holds unless it turned fatal."""
        try:
            self.consumer.close()
        except Exception as exc:  # a close must not hide why the worker stops
            self.log.warning("consumer close failed", error=str(exc))
        if self.fatal:
            return  # nothing it holds may be delivered, and flush() would raise
        try:
            self.producer.flush(5)
        except KafkaException as exc:
            self.log.warning("producer flush at close failed", error=str(exc))

    # -- inside the transaction --------------------------------------------------------------

    def _produce(self, record: OutputRecord) -> None:
        # One direct produce() per record (partition -1: the partitioner's choice; timestamp 0:
        # stamped by the producer); the helper with its keyword dict only when the queue is full.
        topic, partition, key, value, headers, timestamp_ms = record
        try:
            self.producer.produce(
                topic,
                value,
                key,
                partition=-1 if partition is None else partition,
                timestamp=timestamp_ms,
                headers=cast(Any, headers),  # a list of (str, bytes) is one of its accepted forms
            )
        except BufferError:
            options: dict[str, Any] = {"timestamp": timestamp_ms, "headers": headers}
            if partition is not None:
                options["partition"] = partition
            produce_when_room(self.producer, topic, key=key, value=value, wait_s=0.05, **options)

    def _send_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        deadline_s = self.transaction_timeout_s + DEADLINE_MARGIN_S
        with call_deadline(deadline_s, "send_offsets_to_transaction", self.log):
            self.producer.send_offsets_to_transaction(
                positions, self.consumer.consumer_group_metadata(), self.transaction_timeout_s
            )

    def _commit_transaction(self) -> None:
        while True:
            try:
                self.producer.commit_transaction(self.transaction_timeout_s)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() and not error.txn_requires_abort():
                    continue
                raise

    # -- failure -----------------------------------------------------------------------------

    def _abort(self, exc: KafkaException) -> None:
        """Abort after ``exc``; raises :class:`FatalKafkaError` when the producer is done for."""
        error = exc.args[0]
        if error.fatal():
            raise self._fatal(error) from exc
        # produce() on a producer that has just turned fatal (fenced) raises a non-fatal-flagged
        # _FATAL "Local: Fatal error"; abort_transaction() below then raises the real cause.
        producer_fatal = error.code() == KafkaError._FATAL
        if not producer_fatal:
            what = "rewinding" if self.rewind_on_abort else "exiting to restore committed state"
            self.log.warning(f"transaction failed, aborting and {what}", error=str(error))
        self._aborted.inc()
        try:
            self.producer.abort_transaction(self.transaction_timeout_s)
        except KafkaException as abort_exc:
            if abort_exc.args[0].fatal():
                raise self._fatal(abort_exc.args[0]) from abort_exc
            self.log.warning("abort failed", error=str(abort_exc))
        if producer_fatal:
            raise self._fatal(error) from exc

    def _abort_after_bug(self) -> None:
        self._aborted.inc()
        try:
            self.producer.abort_transaction(self.transaction_timeout_s)
        except KafkaException as exc:
            self.fatal = self.fatal or exc.args[0].fatal()
            self.log.warning("abort failed", error=str(exc))

    def _rewind(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Seek the batch's partitions back to their committed offsets (state is untouched)."""
        if not offsets:
            return
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        partitions = [TopicPartition(t, p) for t, p in offsets if (t, p) in owned]
        if not partitions:
            return
        for tp in self.consumer.committed(partitions, timeout=self.transaction_timeout_s):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def _fatal(self, error: object) -> FatalKafkaError:
        self.fatal = True
        return FatalKafkaError(str(error))


def _number(value: int | None) -> int:
    return -1 if value is None else value
