"""Send a subscription command (CONTRACT §4) and wait for its one result.

The results topic is keyed by command-id, so the reader positions itself at the end of every
partition *before* the command is produced: the result cannot slip past unseen. One deadline,
``timeout_s``, covers producing the command and waiting for its result, so a caller (the CLI's
``--timeout``) bounds the whole exchange.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from deltawatch.compacted_table import end_offsets
from deltawatch.kafka_clients import make_producer, make_reader
from deltawatch.settings import CommonSettings


class CommandTimeoutError(TimeoutError):
    def __init__(self, command_id: str, timeout_s: float) -> None:
        super().__init__(f"no result for command {command_id} within {timeout_s:.0f}s")
        self.command_id = command_id


def new_command_id() -> str:
    return f"c-{uuid.uuid4()}"


def command_key(command: dict[str, Any]) -> str:
    """Commands are keyed by instance-id, CPS commands by dataspace (CONTRACT §3)."""
    return str(command.get("instance-id") or command.get("dataspace") or "")


def _produce(settings: CommonSettings, command: dict[str, Any], timeout_s: float) -> None:
    """Produce ``command`` and wait for the broker's acknowledgement; the broker's own error
    (an unknown topic, an authorization failure) is raised as it is."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    producer = make_producer(settings, client_id="deltawatch-cli")
    topic = settings.commands_topic
    producer.produce(
        topic,
        key=command_key(command).encode(),
        value=json.dumps(command).encode(),
        on_delivery=delivered,
    )
    unsent = producer.flush(timeout_s)
    if failures:
        raise KafkaException(failures[0])
    if unsent:
        raise RuntimeError(f"the command was not acknowledged on {topic} within {timeout_s:g}s")


def send_command(
    settings: CommonSettings, command: dict[str, Any], timeout_s: float = 30.0
) -> dict[str, Any]:
    command = {"command-id": new_command_id(), **command}
    command_id = str(command["command-id"])
    reader = make_reader(settings, client_id="deltawatch-cli")
    try:
        topic = settings.command_results_topic
        ends = end_offsets(reader, topic, timeout_s=0)
        reader.assign([TopicPartition(topic, p, offset) for p, offset in ends.items()])

        deadline = time.monotonic() + timeout_s
        _produce(settings, command, timeout_s)
        while time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            if message.key() == command_id.encode():
                result: dict[str, Any] = json.loads(message.value() or b"null")
                return result
        raise CommandTimeoutError(command_id, timeout_s)
    finally:
        reader.close()
