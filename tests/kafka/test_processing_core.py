"""The transactional processing core against the real broker: commit, abort-and-rewind, fencing.

Failures are real broker failures, not mocks: an abortable one is a record larger than its
topic's ``max.message.bytes`` (the broker refuses it, which leaves the transaction only
abortable), and fencing is a second producer with the same ``transactional.id`` calling
``init_transactions``.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

import prometheus_client
import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from deltawatch.kafka_clients import consume_available, make_consumer, make_producer
from deltawatch.logs import get_logger
from deltawatch.processing_core import (
    FatalKafkaError,
    OutputRecord,
    TransactionAbandoned,
    TransactionalCore,
)
from deltawatch.settings import CommonSettings
from tests.fixtures.kafka import committed_records

pytestmark = pytest.mark.kafka

SMALL_LIMIT = 1024
"""``max.message.bytes`` of the topic a too-large record is sent to."""


@dataclass
class Pipeline:
    settings: CommonSettings
    input: str
    output: str
    small: str
    group: str
    transactional_id: str
    registry: prometheus_client.CollectorRegistry = field(
        default_factory=prometheus_client.CollectorRegistry
    )
    ends: list[tuple[str, int]] = field(default_factory=list)

    def core(self, *, rewind_on_abort: bool = True) -> TransactionalCore:
        producer = make_producer(self.settings, transactional_id=self.transactional_id)
        consumer = make_consumer(self.settings, self.group, **{"enable.partition.eof": True})
        consumer.subscribe([self.input])
        counter = prometheus_client.Counter(
            "test_transactions_total", "test", ["outcome"], registry=self.registry
        )
        core = TransactionalCore(
            producer,
            consumer,
            log=get_logger("test-core"),
            transactions=counter,
            rewind_on_abort=rewind_on_abort,
        )
        core.init_transactions()
        return core

    def count(self, outcome: str) -> float:
        value = self.registry.get_sample_value("test_transactions_total", {"outcome": outcome})
        return value or 0.0

    def send_inputs(self, values: list[bytes]) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers})
        for value in values:
            producer.produce(self.input, value=value, partition=0)
        assert producer.flush(30) == 0

    def consume(self, core: TransactionalCore, expected: int) -> list[Message]:
        """Exactly the next ``expected`` input records, waiting for them (and for assignment)."""
        records: list[Message] = []
        deadline = time.monotonic() + 30
        while len(records) < expected:
            assert time.monotonic() < deadline, f"only {len(records)} of {expected} records"
            messages = consume_available(core.consumer, expected - len(records), wait_s=0.5)
            records.extend(core.usable(messages, on_end=self._at_end))
        return records

    def wait_for_end(self, core: TransactionalCore) -> tuple[str, int]:
        """The first end of partition reported: ``usable`` reports it and returns no record."""
        deadline = time.monotonic() + 30
        while not self.ends:
            assert time.monotonic() < deadline, "no end of partition reported"
            assert core.usable(consume_available(core.consumer, 10, wait_s=0.5), self._at_end) == []
        return self.ends[0]

    def _at_end(self, topic: str, partition: int) -> None:
        self.ends.append((topic, partition))

    def committed_offset(self, consumer: Consumer) -> int:
        [tp] = consumer.committed([TopicPartition(self.input, 0)], timeout=10)
        offset: int = tp.offset
        return offset

    def visible(self, topic: str) -> list[bytes | None]:
        return [message.value() for message in committed_records(self.settings, topic)]


@pytest.fixture
def pipeline(kafka_bootstrap: str) -> Pipeline:
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"t.core-{role}.{suffix}" for role in ("input", "output", "small")}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [
        NewTopic(names["input"], 1, 1),
        NewTopic(names["output"], 1, 1),
        NewTopic(names["small"], 1, 1, config={"max.message.bytes": str(SMALL_LIMIT)}),
    ]
    for future in admin.create_topics(topics).values():
        future.result(30)
    return Pipeline(
        settings=CommonSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap),
        input=names["input"],
        output=names["output"],
        small=names["small"],
        group=f"t-core-{suffix}",
        transactional_id=f"t-core-{suffix}",
    )


def outputs(pipeline: Pipeline, messages: list[Message]) -> list[OutputRecord]:
    return [OutputRecord(pipeline.output, None, b"k", b"out-" + m.value()) for m in messages]


def too_large(pipeline: Pipeline) -> OutputRecord:
    """Random bytes, so compression cannot bring them under the topic's limit."""
    return OutputRecord(pipeline.small, 0, None, os.urandom(4 * SMALL_LIMIT))


def next_offsets(pipeline: Pipeline, messages: list[Message]) -> dict[tuple[str, int], int]:
    return {(pipeline.input, 0): max(m.offset() for m in messages) + 1}


def test_commit_writes_records_and_offsets_in_one_transaction(pipeline: Pipeline) -> None:
    pipeline.send_inputs([b"a", b"b", b"c"])
    core = pipeline.core()
    try:
        inputs = pipeline.consume(core, 3)
        headers = [("h", b"1")]
        stamped = OutputRecord(pipeline.output, 0, b"k", b"stamped", headers, 1_700_000_000_000)
        assert core.commit([*outputs(pipeline, inputs), stamped], next_offsets(pipeline, inputs))

        assert pipeline.visible(pipeline.output) == [b"out-a", b"out-b", b"out-c", b"stamped"]
        assert pipeline.committed_offset(core.consumer) == 3
        [last] = committed_records(pipeline.settings, pipeline.output)[-1:]
        assert last.headers() == headers
        assert last.timestamp()[1] == 1_700_000_000_000
        assert pipeline.count("committed") == 1
        assert pipeline.count("aborted") == 0
        assert core.commit([], {})  # an empty transaction (the differ's idle loop) is fine
        assert pipeline.count("committed") == 2
        assert pipeline.wait_for_end(core) == (pipeline.input, 0)
    finally:
        core.close()


def test_an_abortable_failure_aborts_everything_and_rewinds(pipeline: Pipeline) -> None:
    pipeline.send_inputs([b"a", b"b"])
    core = pipeline.core()
    try:
        inputs = pipeline.consume(core, 2)
        offsets = next_offsets(pipeline, inputs)

        assert not core.commit([*outputs(pipeline, inputs), too_large(pipeline)], offsets)

        assert pipeline.count("aborted") == 1
        assert pipeline.visible(pipeline.output) == []
        assert pipeline.committed_offset(core.consumer) < 0  # nothing committed yet
        again = pipeline.consume(core, 2)  # rewound: the same records come again
        assert [(m.offset(), m.value()) for m in again] == [(0, b"a"), (1, b"b")]
        assert core.commit(outputs(pipeline, again), next_offsets(pipeline, again))
        assert pipeline.visible(pipeline.output) == [b"out-a", b"out-b"]
        assert pipeline.committed_offset(core.consumer) == 2
    finally:
        core.close()


def test_without_rewind_an_abortable_failure_abandons_the_transaction(pipeline: Pipeline) -> None:
    pipeline.send_inputs([b"a"])
    core = pipeline.core(rewind_on_abort=False)
    try:
        inputs = pipeline.consume(core, 1)
        with pytest.raises(TransactionAbandoned):
            core.commit(
                [*outputs(pipeline, inputs), too_large(pipeline)], next_offsets(pipeline, inputs)
            )
        assert pipeline.count("aborted") == 1
        assert not core.fatal
        assert pipeline.visible(pipeline.output) == []
        assert pipeline.committed_offset(core.consumer) < 0
    finally:
        core.close()


def test_a_fenced_producer_raises_fatal_kafka_error(pipeline: Pipeline) -> None:
    pipeline.send_inputs([b"a"])
    core = pipeline.core()
    newer = make_producer(pipeline.settings, transactional_id=pipeline.transactional_id)
    try:
        inputs = pipeline.consume(core, 1)
        newer.init_transactions(30)  # fences the core's producer

        with pytest.raises(FatalKafkaError, match=r"(?i)fenc"):
            core.commit(outputs(pipeline, inputs), next_offsets(pipeline, inputs))

        assert core.fatal
        assert pipeline.visible(pipeline.output) == []
        assert pipeline.committed_offset(core.consumer) < 0
    finally:
        core.close()  # must not raise although the producer is fatal
        newer.flush(5)


def test_init_transactions_failure_is_a_fatal_kafka_error() -> None:
    settings = CommonSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")  # nobody listens there
    producer = make_producer(settings, transactional_id=f"t-core-{uuid.uuid4().hex[:8]}")
    consumer = make_consumer(settings, "t-core-unreachable")
    counter = prometheus_client.Counter(
        "t_transactions_total", "test", ["outcome"], registry=prometheus_client.CollectorRegistry()
    )
    core = TransactionalCore(
        producer, consumer, log=get_logger("t"), transactions=counter, transaction_timeout_s=1.0
    )
    try:
        with pytest.raises(FatalKafkaError):
            core.init_transactions()
        assert core.fatal
    finally:
        core.close()
