"""The compacted-table reader against the real broker: what a restore reads, and when it ends."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from deltawatch.compacted_table import (
    TableFollower,
    TableReadInterrupted,
    TableReadTimeout,
    latest_values,
    read_table,
    read_to_end,
    wait_for_leaders,
    watermarks,
)
from deltawatch.kafka_clients import make_admin, make_producer, make_reader
from deltawatch.settings import CommonSettings
from deltawatch.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.kafka


class RecordingReader(Consumer):  # type: ignore[misc]
    """A real read_committed reader that remembers what it was assigned."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.assigned: list[list[int]] = []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append([tp.partition for tp in partitions])
        super().assign(partitions)


@pytest.fixture
def table(kafka_settings: CommonSettings) -> str:
    topic = f"t.table.{uuid.uuid4().hex[:8]}"
    ensure_topics(make_admin(kafka_settings), [TopicSpec(topic, 3, compacted=True)])
    wait_for_leaders(kafka_settings, [topic], client_id="test-table-probe")
    return topic


def _produce(settings: CommonSettings, topic: str, *records: tuple[int, str, str | None]) -> None:
    producer = make_producer(settings, client_id="test-table")
    for partition, key, value in records:
        producer.produce(
            topic,
            key=key.encode(),
            value=None if value is None else value.encode(),
            partition=partition,
        )
    assert producer.flush(10) == 0


def _values(table: dict[str, Any]) -> dict[str, tuple[int, bytes]]:
    return {key: (entry.partition, entry.value) for key, entry in table.items()}


def test_latest_value_per_key_and_tombstones_drop_keys(
    kafka_settings: CommonSettings, table: str
) -> None:
    _produce(
        kafka_settings,
        table,
        (0, "a", "1"),
        (0, "a", "2"),
        (1, "b", "1"),
        (1, "b", None),
        (2, "c", "1"),
        (2, "d", None),  # a tombstone for a key never seen
    )
    read = read_table(kafka_settings, table, [0, 1, 2], client_id="test-table-read")
    assert _values(read) == {"a": (0, b"2"), "c": (2, b"1")}
    assert read["a"].offset == 1
    assert read["a"].timestamp_ms > 0
    assert _values(read_table(kafka_settings, table, [1, 2], client_id="t")) == {"c": (2, b"1")}
    assert _values(read_table(kafka_settings, table, None, client_id="t")) == _values(read)
    assert read_table(kafka_settings, table, [], client_id="t") == {}


def test_an_empty_partition_is_not_read(kafka_settings: CommonSettings, table: str) -> None:
    _produce(kafka_settings, table, (1, "b", "1"))
    reader = RecordingReader(
        {
            "bootstrap.servers": kafka_settings.kafka_bootstrap_servers,
            "group.id": "test-unused",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        read = latest_values(reader, table, [0, 1, 2])
        assert _values(read) == {"b": (1, b"1")}
        assert reader.assigned == [[1]]  # only the partition with records ...
        assert reader.assignment() == []  # ... and unassigned at the end
        nothing = list(read_to_end(reader, table, [0, 2]))
        assert nothing == []
        assert reader.assigned == [[1]]  # no partition to read: no assignment at all
    finally:
        reader.close()


def test_a_restore_stops_at_the_start_end_while_a_producer_keeps_writing(
    kafka_settings: CommonSettings, table: str
) -> None:
    _produce(kafka_settings, table, *[(0, f"k{i}", "before") for i in range(50)])
    stop = threading.Event()
    written = threading.Event()

    def keep_writing() -> None:
        producer = make_producer(kafka_settings, client_id="test-table-writer")
        i = 0
        while not stop.is_set():
            producer.produce(table, key=f"later-{i}".encode(), value=b"later", partition=0)
            producer.flush(10)
            written.set()
            i += 1

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    reader = make_reader(kafka_settings, client_id="test-table-read")
    try:
        assert written.wait(10)
        _low, start_end = watermarks(reader, table, 0, deadline=float("inf"))
        offsets = [m.offset() for m in read_to_end(reader, table, [0], timeout_s=30)]
        assert offsets == sorted(offsets)
        assert len(offsets) >= start_end  # everything up to the end found at the start ...
        _low, later_end = watermarks(reader, table, 0, deadline=float("inf"))
        assert later_end > offsets[-1] + 1  # ... and the writer went on past what was read
    finally:
        stop.set()
        writer.join(10)
        reader.close()


def _transactional(settings: CommonSettings) -> Producer:
    producer = make_producer(settings, transactional_id=f"test-table-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    return producer


def test_aborted_and_open_transactions_are_invisible(
    kafka_settings: CommonSettings, table: str
) -> None:
    producer = _transactional(kafka_settings)
    producer.begin_transaction()
    producer.produce(table, key=b"a", value=b"committed", partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(table, key=b"a", value=b"aborted", partition=0)
    producer.produce(table, key=b"b", value=b"aborted", partition=0)
    producer.abort_transaction(30)
    opened = _transactional(kafka_settings)
    opened.begin_transaction()
    opened.produce(table, key=b"c", value=b"open", partition=0)
    assert opened.flush(10) == 0
    try:
        # The read ends (the markers and the open transaction do not hold it back) and holds
        # only what committed.
        read = read_table(kafka_settings, table, [0], client_id="test-table-read", timeout_s=20)
        assert _values(read) == {"a": (0, b"committed")}
    finally:
        opened.abort_transaction(30)


def test_the_deadline_raises_naming_what_was_not_read(
    kafka_settings: CommonSettings, table: str
) -> None:
    _produce(kafka_settings, table, (0, "a", "1"), (2, "c", "1"))
    reader = make_reader(kafka_settings, client_id="test-table-read")
    try:
        with pytest.raises(TableReadTimeout, match=rf"{table} partitions \[0, 2\]"):
            list(read_to_end(reader, table, [0, 1, 2], timeout_s=0, watermark_timeout_s=10))
        with pytest.raises(TableReadInterrupted):
            list(read_to_end(reader, table, [0], stop_requested=lambda: True))
        assert reader.assignment() == []
    finally:
        reader.close()


def test_a_follower_restores_then_sees_later_writes(
    kafka_settings: CommonSettings, table: str
) -> None:
    _produce(kafka_settings, table, (0, "a", "1"), (1, "b", "1"))
    errors: list[object] = []
    follower = TableFollower(
        make_reader(kafka_settings, client_id="test-follow"), table, errors.append
    )
    seen: list[tuple[int, bytes | None]] = []

    def keep(records: list[Any]) -> None:
        seen.extend((m.partition(), m.value()) for m in records)

    try:
        follower.start()
        assert follower.partitions == [0, 1, 2]  # the empty one is followed too
        assert follower.restore_targets == {0: 1, 1: 1, 2: 0}
        follower.read_restore(20, keep)
        assert follower.restored
        assert sorted(seen) == [(0, b"1"), (1, b"1")]
        _produce(kafka_settings, table, (2, "c", "later"), (0, "a", None))

        deadline = time.monotonic() + 20
        while not ((2, b"later") in seen and (0, None) in seen):
            assert time.monotonic() < deadline, f"later writes never seen: {seen}"
            keep(follower.poll(500, 0.2))
        assert follower.positions.next_offset[2] >= 1
        assert errors == []
    finally:
        follower.close()


def test_records_written_after_the_start_are_not_part_of_the_restore(
    kafka_settings: CommonSettings, table: str
) -> None:
    _produce(kafka_settings, table, *[(0, f"k{i}", "before") for i in range(50)])
    reader = make_reader(kafka_settings, client_id="test-table-read")
    try:
        records = read_to_end(reader, table, [0], timeout_s=30)
        first = next(records)  # the end offsets are taken now
        _produce(kafka_settings, table, *[(0, f"later-{i}", "after") for i in range(20)])
        offsets = [first.offset(), *(m.offset() for m in records)]
        assert offsets == list(range(50))
    finally:
        reader.close()
