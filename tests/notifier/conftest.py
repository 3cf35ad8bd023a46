"""Harness for notifier tests: the worker as a real subprocess, commands, deltas, topic reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from cryptography.fernet import Fernet

from deltawatch.cloud_events import DELTA_TYPE, new_event, to_kafka
from deltawatch.compacted_table import end_offsets
from deltawatch.kafka_clients import make_producer, make_reader
from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink
from deltawatch_tools.local_state import free_port
from tests.fixtures.kafka import committed_records


def pod(name: str, phase: str = "Running", namespace: str = "ns") -> dict[str, Any]:
    """A delta entry as the differ writes it, of a Pod in cluster ``east`` (CONTRACT §10)."""
    return {
        "name": name,
        "namespace": namespace,
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {"kind": "Pod", "metadata": {"name": name}, "status": {"phase": phase}},
    }


class NotifierProcess:
    """``python -m services.notifier`` with this test's topics, restartable."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **extra_env: str) -> NotifierProcess:
        env = {**os.environ, **self.env, **extra_env, "DELTAWATCH_HTTP_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.notifier"], env=env, stdout=log, stderr=log
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"notifier exited {self.process.returncode}: {self.logs()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"notifier never ready: {self.logs()}")

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=5).text

    def wait_metric(self, *lines: str, timeout_s: float = 15.0) -> str:
        """Metrics text once it contains every one of ``lines`` (they lag the HTTP exchange)."""
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.metrics()
            if all(line in text for line in lines):
                return text
            time.sleep(0.1)
        missing = [line for line in lines if line not in text]
        raise AssertionError(f"metrics never showed {missing}")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def notifier_env(topic_env: dict[str, str]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        **topic_env,
        "DELTAWATCH_NOTIFIER_GROUP_ID": f"notifier-test-{tag}",
        "DELTAWATCH_TRANSACTIONAL_ID": f"notifier-test-{tag}",
        "DELTAWATCH_SECRET_KEY": Fernet.generate_key().decode(),
        "DELTAWATCH_LOG_FORMAT": "console",
    }


@pytest.fixture
def notifier(notifier_env: dict[str, str], tmp_path: Path) -> Iterator[NotifierProcess]:
    process = NotifierProcess(notifier_env, tmp_path / "notifier.log")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()


@pytest.fixture
def settings(notifier_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> CommonSettings:
    for name, value in notifier_env.items():
        monkeypatch.setenv(name, value)
    return CommonSettings()


@pytest.fixture
def sink() -> Iterator[CallbackSink]:
    with CallbackSink() as running:
        yield running


class Commands:
    """Produce raw command records and await their result by key."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.producer = make_producer(settings, client_id="test-commands")

    def send_raw(
        self, value: bytes, key: str = "inst-1", result_key: str | None = None
    ) -> dict[str, Any]:
        reader = make_reader(self.settings, client_id="test-results")
        try:
            topic = self.settings.command_results_topic
            ends = end_offsets(reader, topic, timeout_s=0)
            reader.assign([TopicPartition(topic, p, offset) for p, offset in ends.items()])
            where: list[str] = []

            def delivered(err: Any, msg: Any) -> None:
                assert err is None, err
                where.append(f"{msg.topic()}/{msg.partition()}/{msg.offset()}")

            self.producer.produce(
                self.settings.commands_topic, key=key.encode(), value=value, on_delivery=delivered
            )
            self.producer.flush(10)
            expected = result_key or where[0]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                message = reader.poll(0.2)
                if message is None or message.error():
                    continue
                if message.key() == expected.encode():
                    loaded: dict[str, Any] = json.loads(message.value())
                    return loaded
            raise AssertionError(f"no result keyed {expected}")
        finally:
            reader.close()

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        command = {"command-id": f"c-{uuid.uuid4().hex[:12]}", **command}
        key = command.get("instance-id") or command.get("dataspace") or ""
        return self.send_raw(
            json.dumps(command).encode(), key=key, result_key=command["command-id"]
        )

    def create(
        self, instance: str, name: str, url: str, interval: int = 0, **extra: Any
    ) -> dict[str, Any]:
        subscription = {"name": name, "callback-url": url, "min-notify-interval": interval, **extra}
        result = self.send(
            {"action": "create", "instance-id": instance, "subscription": subscription}
        )
        assert result["status"] == "accepted", result
        return result


@pytest.fixture
def commands(settings: CommonSettings) -> Commands:
    return Commands(settings)


class Deltas:
    """Produce delta CloudEvents in the CONTRACT §5 shape."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.producer = make_producer(settings, client_id="test-deltas")
        self.sequence: dict[str, int] = {}

    def send(
        self,
        instance: str,
        created: list[dict[str, Any]] | None = None,
        deleted: list[dict[str, Any]] | None = None,
        modified: list[dict[str, Any]] | None = None,
        at: datetime | None = None,
    ) -> None:
        sequence = self.sequence.get(instance, 0) + 1
        self.sequence[instance] = sequence
        event = new_event(
            event_type=DELTA_TYPE,
            source=self.settings.source,
            event_id=f"{instance}:{sequence}",
            subject=instance,
            time=at or datetime.now(UTC),
            data={
                "instance-id": instance,
                "cluster": self.settings.cluster,
                "sequence": sequence,
                "resource-changes": {
                    "created": created or [],
                    "deleted": deleted or [],
                    "modified": modified or [],
                },
            },
        )
        record = to_kafka(event, instance)
        self.producer.produce(
            self.settings.deltas_topic, key=record.key, value=record.value, headers=record.headers
        )
        self.producer.flush(10)

    def send_raw(
        self, instance: str, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        self.producer.produce(
            self.settings.deltas_topic, key=instance.encode(), value=value, headers=headers
        )
        self.producer.flush(10)


@pytest.fixture
def deltas(settings: CommonSettings) -> Deltas:
    return Deltas(settings)


def read_topic(
    settings: CommonSettings,
    topic: str,
    until: Callable[[dict[str, Any]], bool] = lambda _records: True,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Latest value per key (JSON or None) of the whole topic, re-read until ``until`` holds."""
    deadline = time.monotonic() + timeout_s
    latest: dict[str, Any] = {}
    while time.monotonic() < deadline:
        latest = {}
        for message in committed_records(settings, topic, timeout_s):
            value = message.value()
            latest[message.key().decode()] = json.loads(value) if value is not None else None
        if until(latest):
            return latest
        time.sleep(0.2)
    raise AssertionError(f"{topic} never satisfied the condition; last {latest}")
