"""Send a subscription command and await its one result, for the REST facade (CONTRACT §9).

Writes through REST must go through the commands topic so that Kafka stays the one source of
truth and every notifier replica agrees. A request therefore produces a command with a fresh
command-id and waits for the result the notifier core publishes, keyed by that command-id.

:func:`deltawatch.command_client.send_command` does this once per call with its own reader;
an HTTP server cannot afford a consumer per request. So this process keeps ONE group-less
reader of the results topic, positioned at the end of every partition when it starts (only
results of commands produced afterwards can matter), and hands each result to the asyncio
future registered under its command-id. Futures are registered *before* the command is
produced, so a result cannot arrive unclaimed. The Kafka clients run in plain threads (their
calls block); results cross into the request's event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge

from deltawatch.command_client import CommandTimeoutError, command_key, new_command_id
from deltawatch.compacted_table import end_offsets
from deltawatch.kafka_clients import consume_available, make_producer, make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import CommonSettings

COMMANDS_SENT = Counter(
    "deltawatch_notifier_rest_commands_total",
    "Commands produced by the REST facade, by action and outcome "
    "(accepted, rejected, timeout, not-produced).",
    ["action", "outcome"],
)
PENDING = Gauge(
    "deltawatch_notifier_rest_commands_pending",
    "Commands produced by the REST facade still waiting for their result.",
)

log = get_logger("notifier.command_waiter")


class CommandNotProducedError(RuntimeError):
    """Kafka refused or failed to store the command; nothing will answer it."""


@dataclass
class _Pending:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[dict[str, Any]]


def _settle(future: asyncio.Future[dict[str, Any]], outcome: dict[str, Any] | Exception) -> None:
    """Runs on the future's loop: first outcome wins (a result may race a delivery error)."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class CommandWaiter:
    """Produce commands and await their results; one results reader for the whole process."""

    def __init__(self, settings: CommonSettings, client_id: str = "deltawatch-notifier-rest"):
        self._settings = settings
        self._client_id = client_id
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._positioned = threading.Event()
        self._threads: list[threading.Thread] = []
        self._producer = make_producer(settings, client_id=client_id)

    @property
    def ready(self) -> bool:
        """The results reader sits at the end of every partition: commands may be sent."""
        return self._positioned.is_set()

    def start(self) -> None:
        """Position the results reader at the end of the topic, then serve in threads."""
        reader = make_reader(self._settings, client_id=f"{self._client_id}-results")
        topic = self._settings.command_results_topic
        try:
            ends = end_offsets(reader, topic)
        except Exception:
            reader.close()
            raise
        assignment = [TopicPartition(topic, p, offset) for p, offset in ends.items()]
        reader.assign(assignment)
        self._positioned.set()
        self._threads = [
            threading.Thread(
                target=self._read_results, args=(reader,), name="rest-results", daemon=True
            ),
            threading.Thread(target=self._serve_producer, name="rest-producer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("command waiter positioned", topic=topic, partitions=len(assignment))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._producer.flush(2)

    async def send(self, command: dict[str, Any], timeout_s: float) -> tuple[str, dict[str, Any]]:
        """Produce ``command`` with a fresh command-id; return (command-id, result).

        Raises :class:`CommandTimeoutError` (carrying the command-id) when no result came in
        ``timeout_s``, :class:`CommandNotProducedError` when Kafka did not take the command.
        """
        command = {"command-id": new_command_id(), **command}
        command_id = str(command["command-id"])
        action = str(command.get("action"))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        with self._lock:
            self._pending[command_id] = _Pending(loop, future)
            PENDING.set(len(self._pending))

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                outcome = CommandNotProducedError(f"command not stored in Kafka: {error.str()}")
                loop.call_soon_threadsafe(_settle, future, outcome)

        try:
            try:
                self._producer.produce(
                    self._settings.commands_topic,
                    key=command_key(command).encode(),
                    value=json.dumps(command).encode(),
                    on_delivery=delivered,
                )
            except (BufferError, KafkaException) as exc:
                raise CommandNotProducedError(f"command not produced: {exc}") from exc
            try:
                result = await asyncio.wait_for(future, timeout_s)
            except TimeoutError:
                COMMANDS_SENT.labels(action, "timeout").inc()
                raise CommandTimeoutError(command_id, timeout_s) from None
        except CommandNotProducedError:
            COMMANDS_SENT.labels(action, "not-produced").inc()
            raise
        finally:
            with self._lock:
                self._pending.pop(command_id, None)
                PENDING.set(len(self._pending))
        COMMANDS_SENT.labels(action, str(result.get("status"))).inc()
        return command_id, result

    def _read_results(self, reader: Any) -> None:
        try:
            while not self._stop.is_set():
                for message in consume_available(reader, 500, 0.2):
                    self._dispatch(message)
        finally:
            reader.close()

    def _dispatch(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("reading results failed", error=error.str())
            return
        key = message.key()
        if key is None:
            return
        with self._lock:
            pending = self._pending.get(key.decode(errors="replace"))
        if pending is None:
            return  # a result for another replica's or another client's command
        try:
            result = json.loads(message.value() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            result = None
        if not isinstance(result, dict):
            log.warning("result is not a JSON object", command_id=key.decode(errors="replace"))
            return
        with contextlib.suppress(RuntimeError):  # the request's loop has closed meanwhile
            pending.loop.call_soon_threadsafe(_settle, pending.future, result)

    def _serve_producer(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.2)
