"""Reading a compacted topic as a table: restore it to "now", or follow it for ever.

Every worker keeps some state in compacted topics (changelogs, the subscriptions topic) and
must read it back: the differ and the notifier restore the partitions they were assigned,
the notifier's directories and the watcher's subscription feed follow every partition, the
CLI and the tests take one look. All of them answer the same two questions, once, here (the
idea of Quix Streams' ``state/recovery.py``):

* **Is there anything to read?** The watermarks of each partition, taken when the read
  starts, decide. A partition whose low and high watermarks are equal is empty and is not
  assigned at all; the others are read from the beginning.
* **When is a partition read to its end?** When the reader's position reaches the high
  watermark taken at the start, or the broker reports end-of-partition, whichever comes
  first. The position advances past every record *and* past what a ``read_committed``
  fetch skips (commit and abort markers, aborted records), which librdkafka reports only as
  the end-of-partition offset; :class:`Positions` keeps both. Records written after the
  start (a producer that keeps writing) are not part of a restore: they are dropped, so a
  restore ends even under load.

Every reader here is ``read_committed`` (:func:`deltawatch.kafka_clients.make_reader`): the
high watermark such a reader is given by ``get_watermark_offsets`` is the last stable offset,
so a restore holds exactly what committed transactions wrote, never a batch whose offsets
were not committed. A restore has a deadline and fails with :class:`TableReadTimeout`
naming the topic and the partitions not read, instead of hanging.

What a record *means* (its key and value types, what a tombstone does to the caller's
state, what an undecodable value does) stays with each caller: :func:`read_to_end` hands out
the raw messages; :func:`latest_values` is the common case of latest value per key, a
tombstone dropping its key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from deltawatch.kafka_clients import consume_available, make_reader
from deltawatch.settings import CommonSettings

__all__ = [
    "Positions",
    "TableEntry",
    "TableFollower",
    "TableReadInterrupted",
    "TableReadTimeout",
    "end_offsets",
    "is_transient",
    "latest_values",
    "read_table",
    "read_to_end",
    "topic_partitions",
    "wait_for_leaders",
    "watermarks",
]

RESTORE_BATCH = 10000
QUERY_TIMEOUT_S = 10.0
"""One offset or metadata query; deadlines are checked between queries."""


class TableReadTimeout(TimeoutError):
    """A table was not read to its end within the allowed time."""


class TableReadInterrupted(Exception):
    """Shutdown was requested while a table was being read."""


def is_transient(exc: KafkaException) -> bool:
    """Worth retrying: leadership moving, a topic just created, a retriable broker error."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (
        error.retriable()
        or error.code()
        in (
            KafkaError.NOT_LEADER_FOR_PARTITION,
            KafkaError.LEADER_NOT_AVAILABLE,
            KafkaError.UNKNOWN_TOPIC_OR_PART,
        )
    )


def watermarks(
    reader: Consumer,
    topic: str,
    partition: int,
    deadline: float,
    retry: Callable[[KafkaException], bool] = is_transient,
    cached: bool = False,
) -> tuple[int, int]:
    """``(low, high)`` of one partition, retried while ``retry`` says so, until ``deadline``.

    Right after a topic was created its partitions answer "not leader" to offset queries for
    a short while, even after the metadata names a leader.
    """
    while True:
        try:
            low, high = reader.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=QUERY_TIMEOUT_S, cached=cached
            )
            return int(low), int(high)
        except KafkaException as exc:
            if not retry(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def topic_partitions(reader: Consumer, topic: str) -> list[int]:
    """Every partition of ``topic``; raises while it does not exist (transient at first)."""
    metadata = reader.list_topics(topic, timeout=10).topics[topic]
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    if not metadata.partitions:
        raise RuntimeError(f"topic {topic} does not exist")
    return sorted(metadata.partitions)


def end_offsets(reader: Consumer, topic: str, timeout_s: float = 30.0) -> dict[int, int]:
    """Partition → end offset of every partition (last stable offset, ``read_committed``).

    Transient errors (a topic just created, no leader yet) are retried until ``timeout_s``,
    anything else raises.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return {
                p: watermarks(reader, topic, p, deadline)[1]
                for p in topic_partitions(reader, topic)
            }
        except KafkaException as exc:
            if not is_transient(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_for_leaders(
    settings: CommonSettings, topics: Iterable[str], *, client_id: str, timeout_s: float = 30.0
) -> None:
    """Block until every partition of ``topics`` answers an offset query (any error retried).

    Topics created a moment ago answer "not leader" to offset queries for a short while,
    even after the metadata names a leader; a worker that reads or follows tables at once
    after creating its topics waits for this first.
    """
    reader = make_reader(settings, client_id=client_id)
    deadline = time.monotonic() + timeout_s
    try:
        for topic in topics:
            partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
            for partition in partitions:
                watermarks(reader, topic, partition, deadline, retry=lambda _exc: True)
    finally:
        reader.close()


@dataclass
class Positions:
    """Partition → the next offset this reader will return (0 for a partition not read yet).

    Advanced by every record (its offset + 1) and by every end-of-partition event (its
    offset), never moved back.
    """

    next_offset: dict[int, int] = field(default_factory=dict)

    def advance(self, partition: int | None, offset: int | None) -> None:
        if partition is None or offset is None or offset < 0:
            return
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset)

    def observe(self, message: Message) -> bool:
        """Advance by ``message``; True for a record, False for an end-of-partition event.

        Other errors are not positions: they raise as :class:`KafkaException`.
        """
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
            self.advance(message.partition(), message.offset())
            return False
        offset = message.offset()
        self.advance(message.partition(), None if offset is None else offset + 1)
        return True

    def reached(self, targets: dict[int, int]) -> bool:
        """Every partition read up to its target offset."""
        return not self.pending(targets)

    def pending(self, targets: dict[int, int]) -> set[int]:
        """The partitions not yet read up to their target offset."""
        return {p for p, end in targets.items() if self.next_offset.get(p, 0) < end}


def read_to_end(
    reader: Consumer,
    topic: str,
    partitions: Iterable[int],
    *,
    timeout_s: float | None = 60.0,
    stop_requested: Callable[[], bool] = lambda: False,
    watermark_retry: Callable[[KafkaException], bool] = is_transient,
    watermark_timeout_s: float | None = None,
) -> Iterator[Message]:
    """The records of ``partitions`` from the beginning to their end as of the call.

    ``reader`` is assigned the non-empty partitions and unassigned at the end, so a
    long-lived reader can be used again (the differ restores with one inside its consumer's
    ``on_assign``). ``timeout_s=None`` reads without a deadline; otherwise
    :class:`TableReadTimeout` is raised past it. :class:`TableReadInterrupted` is raised
    when ``stop_requested()`` turns true. Errors other than end-of-partition raise. The
    watermark queries are retried while ``watermark_retry`` says so, within
    ``watermark_timeout_s`` (default: the read's own deadline).
    """
    started = time.monotonic()
    deadline = started + (60.0 if timeout_s is None else timeout_s)
    queries_until = deadline if watermark_timeout_s is None else started + watermark_timeout_s
    targets: dict[int, int] = {}
    for partition in partitions:
        low, high = watermarks(reader, topic, partition, queries_until, watermark_retry)
        if high > low:
            targets[partition] = high
    if not targets:
        return
    positions = Positions()
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(targets)])
    try:
        while pending := positions.pending(targets):
            if stop_requested():
                raise TableReadInterrupted(f"reading {topic} {sorted(pending)} interrupted")
            if timeout_s is not None and time.monotonic() > deadline:
                raise TableReadTimeout(
                    f"reading {topic} partitions {sorted(pending)} took over {timeout_s:g}s"
                )
            yield from _records_before(
                targets, positions, consume_available(reader, RESTORE_BATCH, 0.5)
            )
    finally:
        reader.unassign()


def _records_before(
    targets: dict[int, int], positions: Positions, messages: list[Message]
) -> Iterator[Message]:
    """The records of one batch below their partition's target; ``positions`` advanced.

    A restore reads tens of thousands of records a second, so the positions move once per
    batch (to each partition's last offset) rather than once per record.
    """
    last: dict[int, int] = {}
    for message in messages:
        at = message.partition()
        if message.error() is not None:
            positions.observe(message)  # raises unless it is the end of the partition
            if at is not None:  # at the end: done, whatever the target
                positions.advance(at, targets.get(at))
            continue
        offset = message.offset()
        if at is None or offset is None:
            continue
        last[at] = offset
        end = targets.get(at)
        if end is not None and offset < end:
            yield message
    for at, offset in last.items():
        positions.advance(at, offset + 1)


@dataclass(frozen=True)
class TableEntry:
    """The latest value of one key, and where it was read."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes


def latest_values(
    reader: Consumer,
    topic: str,
    partitions: Iterable[int],
    *,
    timeout_s: float | None = 60.0,
    watermark_retry: Callable[[KafkaException], bool] = is_transient,
) -> dict[str, TableEntry]:
    """Latest value per key (keys decoded as UTF-8) of ``partitions``, as of the call.

    A tombstone drops its key; records without a key are skipped.
    """
    table: dict[str, TableEntry] = {}
    for message in read_to_end(
        reader, topic, partitions, timeout_s=timeout_s, watermark_retry=watermark_retry
    ):
        raw_key = message.key()
        if raw_key is None:
            continue
        key = raw_key.decode("utf-8", errors="replace")
        value = message.value()
        if value is None:
            table.pop(key, None)
        else:
            table[key] = TableEntry(
                message.partition() or 0, message.offset() or 0, message.timestamp()[1], value
            )
    return table


def read_table(
    settings: CommonSettings,
    topic: str,
    partitions: Iterable[int] | None,
    *,
    client_id: str,
    timeout_s: float = 60.0,
) -> dict[str, TableEntry]:
    """:func:`latest_values` with a reader of its own; blocking (call it from a thread).

    ``partitions=None`` reads every partition of the topic. Watermark queries are retried on
    any error within ``timeout_s``: this is what runs right after a worker created its
    topics, whose partitions may not have a leader yet.
    """
    wanted = None if partitions is None else sorted(partitions)
    if wanted == []:
        return {}
    reader = make_reader(settings, client_id=client_id)
    try:
        if wanted is None:
            wanted = topic_partitions(reader, topic)
        return latest_values(
            reader, topic, wanted, timeout_s=timeout_s, watermark_retry=lambda _exc: True
        )
    finally:
        reader.close()


class TableFollower:
    """Every partition of a topic, read from the beginning and followed for ever.

    :meth:`start` takes the end offsets of every partition (the *restore targets*) and
    assigns all of them, empty ones included (later writes must be seen);
    :attr:`restored` turns true once the reader has reached those targets. :meth:`poll`
    returns the records that arrived; errors other than end-of-partition go to ``on_error``
    (a follower outlives a passing broker error).
    """

    def __init__(
        self, reader: Consumer, topic: str, on_error: Callable[[KafkaError], None]
    ) -> None:
        self.reader = reader
        self.topic = topic
        self.positions = Positions()
        self.restore_targets: dict[int, int] = {}
        self._on_error = on_error

    @property
    def partitions(self) -> list[int]:
        return sorted(self.restore_targets)

    @property
    def restored(self) -> bool:
        return self.positions.reached(self.restore_targets)

    def start(self, timeout_s: float = 30.0) -> None:
        """Take the restore targets (transient errors retried for ``timeout_s``) and assign."""
        self.restore_targets = end_offsets(self.reader, self.topic, timeout_s)
        self.reader.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions]
        )

    def apply(self, messages: Iterable[Message]) -> list[Message]:
        """Advance the positions by ``messages``; the records among them."""
        records = []
        for message in messages:
            try:
                if self.positions.observe(message):
                    records.append(message)
            except KafkaException as exc:
                self._on_error(exc.args[0])
        return records

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """The records that arrive within ``timeout_s`` (at most ``max_messages``)."""
        return self.apply(consume_available(self.reader, max_messages, timeout_s))

    def read_restore(self, timeout_s: float, on_records: Callable[[list[Message]], None]) -> None:
        """Read until :attr:`restored`, handing records to ``on_records``; bounded."""
        deadline = time.monotonic() + timeout_s
        while not self.restored:
            if time.monotonic() > deadline:
                pending = sorted(self.positions.pending(self.restore_targets))
                raise TableReadTimeout(f"{self.topic} {pending} not read within {timeout_s:g}s")
            on_records(self.poll(500, 0.5))

    def close(self) -> None:
        self.reader.close()
