"""The real broker behaves as the pipeline's guarantees need (transactions, compaction, groups)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from deltawatch.settings import CommonSettings
from deltawatch.topics import TopicSpec, contract_topics, ensure_topics

pytestmark = pytest.mark.kafka


def _consume_all(bootstrap: str, topic: str, expected: int, *, committed: bool) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, 0)])
    values: list[bytes] = []
    try:
        while True:
            msg = consumer.poll(10)
            assert msg is not None, f"no end of partition reached; got {values}"
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    if len(values) >= expected:
                        return values
                    continue
                raise AssertionError(msg.error())
            values.append(msg.value())
    finally:
        consumer.close()


def _topic(bootstrap: str, compacted: bool = False, partitions: int = 1) -> str:
    name = f"t.broker.{uuid.uuid4().hex[:8]}"
    ensure_topics(
        AdminClient({"bootstrap.servers": bootstrap}), [TopicSpec(name, partitions, compacted)]
    )
    return name


def test_produce_consume_round_trip(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"v{i}".encode())
    assert producer.flush(10) == 0
    assert _consume_all(kafka_bootstrap, topic, 5, committed=True) == [
        f"v{i}".encode() for i in range(5)
    ]


def test_aborted_transaction_is_invisible_to_read_committed(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(10)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)

    assert _consume_all(kafka_bootstrap, topic, 1, committed=True) == [b"committed"]
    # The aborted record is physically in the log: only isolation hides it.
    assert _consume_all(kafka_bootstrap, topic, 2, committed=False) == [b"aborted", b"committed"]


def test_compacted_topic_is_created_compacted(kafka_settings: CommonSettings) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_settings.kafka_bootstrap_servers})
    topics = contract_topics(kafka_settings)
    ensure_topics(admin, list(topics.values()))
    resources = [
        ConfigResource(ResourceType.TOPIC, topics["subscriptions"].name),
        ConfigResource(ResourceType.TOPIC, topics["deltas"].name),
    ]
    configs = {
        res.name: future.result(10) for res, future in admin.describe_configs(resources).items()
    }
    assert configs[topics["subscriptions"].name]["cleanup.policy"].value == "compact"
    assert configs[topics["deltas"].name]["cleanup.policy"].value == "delete"
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[topics["deltas"].name].partitions) == kafka_settings.partitions
    # Creating again is a no-op, not an error.
    ensure_topics(admin, list(topics.values()))


def test_consumer_group_splits_partitions(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap, partitions=4)
    group = f"g-{uuid.uuid4().hex}"

    def member() -> Consumer:
        consumer = Consumer(
            {"bootstrap.servers": kafka_bootstrap, "group.id": group, "group.protocol": "consumer"}
        )
        consumer.subscribe([topic])
        return consumer

    first, second = member(), member()
    try:
        for _ in range(100):
            first.poll(0.2)
            second.poll(0.2)
            a = {tp.partition for tp in first.assignment()}
            b = {tp.partition for tp in second.assignment()}
            if a and b and a | b == {0, 1, 2, 3} and not a & b:
                break
        else:
            raise AssertionError(f"no split assignment: {a} / {b}")
    finally:
        first.close()
        second.close()


def test_cli_status_prints_the_bootstrap(kafka_bootstrap: str, kafka_broker: object) -> None:
    if kafka_broker is None:
        pytest.skip("external broker given by KAFKA_BOOTSTRAP_SERVERS; the CLI manages local ones")
    result = subprocess.run(
        [sys.executable, "-c", "from deltawatch_tools.cli import main; main()", "kafka", "status"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == kafka_bootstrap
