"""What every watcher test needs: the watcher as a real subprocess, and what it published.

Each test runs ``python -m services.watcher`` against the real kube-apiserver and the real
broker, with its own topics (``topic_env``) and its own namespace, and then reads the
resource-events topic back exactly as the differ would: every partition, decoded with the
same Avro serde. Nothing is inferred from the watcher's logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from deltawatch import compacted_table
from deltawatch.avro_serde import AvroSerde
from deltawatch.kafka_clients import make_reader
from deltawatch.settings import CommonSettings
from deltawatch_tools.local_state import free_port
from deltawatch_tools.localkube import LocalKubeServer

LABEL = "k8splugin.io/rb-instance-id"
REPO = Path(__file__).resolve().parents[2]


class WatcherProcess:
    """``python -m services.watcher`` with a test's environment; stderr kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.port = int(env["DELTAWATCH_HTTP_PORT"])
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout_s: float = 60.0) -> WatcherProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.watcher"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"watcher exited {self.process.returncode}:\n{self.logs()}")
            try:
                response = httpx.get(f"{self.base}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise AssertionError(f"watcher not ready after {timeout_s}s ({last}):\n{self.logs()}")

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=5).text

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM; the exit code (CONTRACT §1: 0 within 10 s)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"watcher ignored SIGTERM for {timeout_s}s:\n{self.logs()}"
            ) from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


class PublishedEvents:
    """Everything on the resource-events topic, decoded; poll with :meth:`wait_for`."""

    def __init__(self, settings: CommonSettings) -> None:
        self.topic = settings.resource_events_topic
        self.serde = AvroSerde.from_file("resource-event.avsc", self.topic, None)
        self.consumer = make_reader(settings, client_id="watcher-test-reader")
        self.records: list[dict[str, Any]] = []
        self.partitions: list[int] = []

    def assign(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            topic = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if topic is not None and topic.error is None and topic.partitions:
                self.partitions = sorted(topic.partitions)
                self.consumer.assign(
                    [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions]
                )
                return
            time.sleep(0.2)
        raise AssertionError(f"topic {self.topic} never appeared")

    def poll(self, timeout_s: float = 0.2) -> None:
        if not self.partitions:
            self.assign()
        for message in self.consumer.consume(1000, timeout_s):
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error.str()
                continue
            self.records.append(self._decoded(message))

    def _decoded(self, message: Message) -> dict[str, Any]:
        record: dict[str, Any] = self.serde.decode(message.value())
        record["_partition"] = message.partition()
        record["_key"] = message.key().decode() if message.key() else None
        return record

    def read_to_end(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Re-read the topic from the beginning up to its end *now* (the end offsets found at
        the call): exactly what had been acknowledged before the call."""
        self.assign()
        self.records = [
            self._decoded(message)
            for message in compacted_table.read_to_end(
                self.consumer, self.topic, self.partitions, timeout_s=timeout_s
            )
        ]
        return self.records

    def wait_for(
        self,
        condition: Callable[[list[dict[str, Any]]], Any],
        timeout_s: float = 30.0,
        what: str = "records",
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            result = condition(self.records)
            if result:
                return result
            if time.monotonic() > deadline:
                summary = [(r["type"], r["kind"], r["name"]) for r in self.records][-40:]
                raise AssertionError(f"timed out waiting for {what}; last records: {summary}")

    def objects(self, *types: str, name: str | None = None) -> list[dict[str, Any]]:
        return [
            r for r in self.records if r["type"] in types and (name is None or r["name"] == name)
        ]

    def close(self) -> None:
        self.consumer.close()


def list_ends(records: list[dict[str, Any]], kind: str, partitions: int) -> list[str]:
    """list_ids of the lists of ``kind`` whose LIST_END reached every partition."""
    seen: dict[str, set[int]] = {}
    for r in records:
        if r["type"] == "LIST_END" and r["kind"] == kind:
            seen.setdefault(r["list_id"], set()).add(r["_partition"])
    return [lid for lid, parts in seen.items() if len(parts) == partitions]


def obj_of(record: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record["object"])
    return value


def configmap(namespace: str, name: str, instance: str | None, **data: str) -> dict[str, Any]:
    labels = {LABEL: instance} if instance is not None else {"other": "x"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


def watcher_env(
    topic_env: dict[str, str],
    kubeconfig: Path,
    namespace: str,
    **extra: str,
) -> dict[str, str]:
    env = {
        **os.environ,
        **topic_env,
        "KUBECONFIG": str(kubeconfig),
        "DELTAWATCH_NAMESPACES": namespace,
        "DELTAWATCH_HTTP_PORT": str(free_port()),
        "DELTAWATCH_RESOURCE_TYPES": "v1/ConfigMap,v1/Pod",
        "DELTAWATCH_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


@pytest.fixture
def events(topic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[PublishedEvents]:
    for name, value in topic_env.items():
        monkeypatch.setenv(name, value)
    reader = PublishedEvents(CommonSettings())
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture
def start_watcher(
    tmp_path: Path,
) -> Iterator[Callable[[dict[str, str]], WatcherProcess]]:
    """Start watchers; any still running at the end are stopped (and must exit 0)."""
    started: list[WatcherProcess] = []

    def start(env: dict[str, str], wait_ready: bool = True) -> WatcherProcess:
        watcher = WatcherProcess(env, tmp_path / f"watcher-{len(started)}.log")
        started.append(watcher)
        return watcher.start(wait_ready=wait_ready)

    yield start  # type: ignore[misc]
    for watcher in started:
        watcher.kill()


@pytest.fixture
def kubeconfig(kube_server: LocalKubeServer) -> Path:
    return kube_server.kubeconfig


def fold(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """What a consumer that applies the records as the differ must ends up knowing.

    Per partition, in order: watch events add, replace or remove an object; a list's
    LISTED objects are collected and, at its LIST_END, replace everything known of that
    kind (in that namespace) — so objects deleted while nobody watched disappear. A list
    without its LIST_END is discarded. Keys are (kind, namespace, name)."""
    known: dict[tuple[str, str, str], dict[str, Any]] = {}
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_partition.setdefault(r["_partition"], []).append(r)
    for rs in by_partition.values():
        state: dict[tuple[str, str, str], dict[str, Any]] = {}
        lists: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
        for r in rs:
            key = (r["kind"], r["namespace"] or "", r["name"] or "")
            if r["type"] == "LIST_BEGIN":
                lists[r["list_id"]] = {}
            elif r["type"] == "LISTED":
                if r["list_id"] in lists:
                    lists[r["list_id"]][key] = r
            elif r["type"] == "LIST_END":
                listed = lists.pop(r["list_id"], None)
                if listed is None:
                    continue
                state = {
                    k: v
                    for k, v in state.items()
                    if not (
                        k[0] == r["kind"] and (r["namespace"] is None or k[1] == r["namespace"])
                    )
                }
                state.update(listed)
            elif r["type"] in ("ADDED", "MODIFIED"):
                state[key] = r
            elif r["type"] == "DELETED":
                state.pop(key, None)
        known.update(state)
    return known


def watch_event_ids(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (r["type"], r["uid"], r["resource_version"])
        for r in records
        if r["type"] in ("ADDED", "MODIFIED", "DELETED")
    ]
