"""The facade's two Kafka edges against the real broker: the subscription directory (restore,
read-your-writes, tombstones, bounded lag) and the command waiter (one results reader,
many concurrent commands, timeouts that name the command)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from deltawatch.command_client import CommandTimeoutError
from deltawatch.health import HealthState
from deltawatch.http_server import build_app
from deltawatch.kafka_clients import make_admin, make_producer, make_reader
from deltawatch.settings import CommonSettings, NotifierSettings
from deltawatch.topics import contract_topics, ensure_topics
from services.notifier.command_waiter import CommandWaiter
from services.notifier.rest.facade import RestFacade
from services.notifier.subscription_directory import DirectoryLagError, SubscriptionDirectory
from tests.fixtures.kafka import committed_records

pytestmark = pytest.mark.kafka

URL = "http://10.0.0.5:8080/notify"


@pytest.fixture
def settings(kafka_settings: CommonSettings) -> CommonSettings:
    ensure_topics(make_admin(kafka_settings), list(contract_topics(kafka_settings).values()))
    return kafka_settings


def state(instance_id: str, name: str, status: int = 0) -> bytes:
    return json.dumps(
        {
            "name": name,
            "min-notify-interval": 0,
            "last-update-time": "2026-01-01T00:00:00.000Z",
            "callback-url": URL,
            "last-notify-time": "2026-01-01T00:00:00.000Z",
            "last-notify-status": status,
            "metadata": {"owner": "so"},
            "instance-id": instance_id,
            "created-at": "2026-01-01T00:00:00.000Z",
            "created-at-ms": 1767225600000,
        }
    ).encode()


class StateWriter:
    """Writes subscription states the way the notifier core does: in transactions."""

    def __init__(self, settings: CommonSettings, tag: str) -> None:
        self.topic = settings.subscriptions_topic
        self.producer = make_producer(settings, transactional_id=f"{self.topic}-{tag}")
        self.producer.init_transactions(10)

    def write(self, *records: tuple[str, bytes | None], commit: bool = True) -> None:
        self.producer.begin_transaction()
        for key, value in records:
            self.producer.produce(self.topic, key=key.encode(), value=value)
        if commit:
            self.producer.commit_transaction(10)
        else:
            self.producer.flush(10)


def wait_until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def directory(settings: CommonSettings) -> Iterator[SubscriptionDirectory]:
    directory = SubscriptionDirectory(settings)
    yield directory
    directory.stop()


def test_directory_restores_then_reads_its_writes(
    settings: CommonSettings, directory: SubscriptionDirectory
) -> None:
    writer = StateWriter(settings, "a")
    writer.write(("i1/a", state("i1", "a")), ("i1/b", state("i1", "b")), ("i2/a", state("i2", "a")))
    writer.write(("i1/b", None))
    restored = threading.Event()
    directory.start(on_restored=restored.set)
    assert restored.wait(20)
    assert directory.ready
    assert [s["name"] for s in directory.of_instance("i1")] == ["a"]

    async def write_then_read() -> None:
        for status in (200, 500, 204):
            writer.write(("i1/a", state("i1", "a", status)), ("i1/c", state("i1", "c")))
            # No polling: catch_up alone must make the committed write visible.
            await directory.catch_up(10)
            found = directory.get("i1", "a")
            assert found is not None
            assert found["last-notify-status"] == status
        writer.write(("i1/c", None))
        await directory.catch_up(10)
        assert directory.get("i1", "c") is None
        assert [s["name"] for s in directory.of_instance("i2")] == ["a"]

    asyncio.run(write_then_read())


def test_an_open_transaction_holds_reads_back_until_resolved(
    settings: CommonSettings, directory: SubscriptionDirectory
) -> None:
    """Reads wait for the high watermark: a write in flight is either shown or the read waits."""
    directory.start()
    wait_until(lambda: directory.ready)
    writer = StateWriter(settings, "open")
    writer.write(("i1/a", state("i1", "a")), commit=False)

    async def read() -> None:
        with pytest.raises(DirectoryLagError):
            await directory.catch_up(0.5)
        assert directory.get("i1", "a") is None
        writer.producer.commit_transaction(10)
        await directory.catch_up(5)
        assert directory.get("i1", "a") is not None

    asyncio.run(read())


def test_catch_up_is_bounded_when_the_directory_falls_behind(
    settings: CommonSettings, directory: SubscriptionDirectory
) -> None:
    directory.start()
    wait_until(lambda: directory.ready)
    directory.stop()  # nothing consumes any more
    StateWriter(settings, "lag").write(("i1/a", state("i1", "a")))

    async def read() -> None:
        started = time.monotonic()
        with pytest.raises(DirectoryLagError):
            await directory.catch_up(0.5)
        assert time.monotonic() - started < 5

    asyncio.run(read())


class Responder:
    """Stands in for the notifier core: answers every command with an accepted result."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.keys: dict[str, bytes | None] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        reader = make_reader(self.settings, client_id="test-responder")
        producer = make_producer(self.settings)
        topic = self.settings.commands_topic
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        try:
            while not self.stop.is_set():
                message = reader.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                command = json.loads(message.value() or b"{}")
                self.keys[command["command-id"]] = message.key()
                result = {
                    "command-id": command["command-id"],
                    "status": "accepted",
                    "error": None,
                    "action": command["action"],
                    "instance-id": command["instance-id"],
                    "subscription-name": command["subscription"]["name"],
                    "processed-at": "2026-01-01T00:00:00.000Z",
                }
                producer.produce(
                    self.settings.command_results_topic,
                    key=command["command-id"].encode(),
                    value=json.dumps(result).encode(),
                )
                producer.flush(10)
        finally:
            reader.close()


def test_waiter_routes_each_result_to_its_command(settings: CommonSettings) -> None:
    # A result already on the topic before the waiter starts must never be taken for an answer.
    stale = make_producer(settings)
    stale.produce(settings.command_results_topic, key=b"stale", value=b'{"status": "accepted"}')
    stale.flush(10)
    responder = Responder(settings)
    responder.thread.start()
    waiter = CommandWaiter(settings)
    waiter.start()
    assert waiter.ready
    try:

        async def send_many() -> list[tuple[str, dict[str, Any]]]:
            commands = [
                {
                    "action": "create",
                    "instance-id": f"inst-{i % 4}",
                    "subscription": {"name": f"s-{i}", "callback-url": URL},
                }
                for i in range(20)
            ]
            return await asyncio.gather(*(waiter.send(c, 20) for c in commands))

        answers = asyncio.run(send_many())
    finally:
        waiter.stop()
        responder.stop.set()
        responder.thread.join(10)
    assert len({command_id for command_id, _ in answers}) == 20
    for i, (command_id, result) in enumerate(answers):
        assert result["command-id"] == command_id
        assert result["subscription-name"] == f"s-{i}"
        assert responder.keys[command_id] == f"inst-{i % 4}".encode()


def test_waiter_timeout_names_the_command_it_produced(settings: CommonSettings) -> None:
    waiter = CommandWaiter(settings)
    waiter.start()
    try:
        command = {"action": "delete", "instance-id": "inst-1", "subscription-name": "s"}
        with pytest.raises(CommandTimeoutError) as raised:
            asyncio.run(waiter.send(command, 0.5))
    finally:
        waiter.stop()
    produced = _read_all(settings, settings.commands_topic)
    assert [c["command-id"] for c in produced] == [raised.value.command_id]
    assert produced[0]["action"] == "delete"


def test_facade_answers_504_with_the_command_id_when_no_core_answers(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELTAWATCH_API_TIMEOUT_S", "1")
    health = HealthState([])
    facade = RestFacade(NotifierSettings(), health)
    assert not health.ready
    app = build_app(health, facade.routes)

    async def post(path: str, body: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facade") as client:
            return await client.post(path, json=body, timeout=10)

    path = "/v1/instance/inst-1/status/subscription"
    body = {"name": "s", "callback-url": URL}
    before_start = asyncio.run(post(path, body))
    assert before_start.status_code == 503
    assert before_start.json()["error"]["code"] == "not-ready"
    facade.start()
    try:
        wait_until(lambda: health.ready)
        response = asyncio.run(post(path, body))
    finally:
        facade.stop()
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "timeout"
    produced = _read_all(settings, settings.commands_topic)
    assert [c["command-id"] for c in produced] == [error["command-id"]]
    assert produced[0]["subscription"] == {
        "name": "s",
        "callback-url": URL,
        "min-notify-interval": 0,
        "metadata": {},
    }


def _read_all(settings: CommonSettings, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.value() or b"null") for m in committed_records(settings, topic, 20)]
