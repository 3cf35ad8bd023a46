"""Drive a real differ process against the real broker: feed resource events, read deltas.

The differ runs as ``python -m services.differ`` with the test's unique topics; events are
produced Avro-encoded exactly as the watcher writes them (markers to every partition with a
null key), and deltas are read back with a ``read_committed`` consumer, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from deltawatch.avro_serde import AvroSerde
from deltawatch.cloud_events import DELTA_TYPE, from_kafka
from deltawatch.topics import TopicSpec, ensure_topics
from deltawatch_tools.local_state import free_port

DIFFER_VARIABLES = (
    "DELTAWATCH_DIFFER_GROUP_ID",
    "DELTAWATCH_DIFFER_DLQ_TOPIC",
    "DELTAWATCH_DIFFER_CHANGELOG_TOPIC",
)


def differ_env(topic_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The test's topics plus a unique group, changelog and DLQ for the differ."""
    suffix = topic_env["DELTAWATCH_DELTAS_TOPIC"].split(".", 2)[-1]
    return {
        **topic_env,
        "DELTAWATCH_DIFFER_GROUP_ID": f"differ-{suffix}",
        "DELTAWATCH_DIFFER_DLQ_TOPIC": f"t.differ-dlq.{suffix}",
        "DELTAWATCH_DIFFER_CHANGELOG_TOPIC": f"t.differ-changelog.{suffix}",
        "DELTAWATCH_CLUSTER": "test-cluster",
        "DELTAWATCH_LOG_LEVEL": "INFO",
        **extra,
    }


def create_pipeline_topics(env: dict[str, str]) -> None:
    """The input and output topics, as the watcher / differ create them at start."""
    partitions = int(env["DELTAWATCH_PARTITIONS"])
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    names = [env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"], env["DELTAWATCH_DELTAS_TOPIC"]]
    ensure_topics(admin, [TopicSpec(name, partitions) for name in names])
    for name in names:
        wait_until(
            lambda name=name: (
                len(admin.list_topics(name, timeout=5).topics[name].partitions) == partitions
            ),
            30,
            f"topic {name} metadata",
        )


@dataclass
class DifferProcess:
    env: dict[str, str]
    transactional_id: str | None
    """``None``: the differ claims its default id, as a deployment without the setting does."""
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DifferProcess:
        env = {**os.environ, **self.env, "DELTAWATCH_HTTP_PORT": str(self.port)}
        if self.transactional_id is not None:
            env["DELTAWATCH_TRANSACTIONAL_ID"] = self.transactional_id
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.differ"], env=env, stdout=log, stderr=log
            )
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        wait_until(
            self.ready,
            timeout_s,
            f"differ ready on {self.port} (log {self.log_path})",
            alive=self.alive,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=5).text

    def gauge(self, name: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def terminate(self, timeout_s: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if not alive():
            raise AssertionError(f"process died while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def pod(name: str, instance: str, *, phase: str = "Running", rv: str = "1", uid: str = "") -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid or f"uid-{instance}-{name}",
            "resourceVersion": rv,
            "labels": {"k8splugin.io/rb-instance-id": instance},
        },
        "status": {"phase": phase},
    }


def launch(
    processes: list[DifferProcess], env: dict[str, str], member_id: str | None, log: Path
) -> DifferProcess:
    """A differ process started and registered for the ``processes`` fixture to kill."""
    process = DifferProcess(env, member_id, log).start()
    processes.append(process)
    return process


class EventFeed:
    """Produces resource events as the watcher does."""

    def __init__(self, env: dict[str, str]) -> None:
        self.topic = env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"]
        self.bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
        self.serde = AvroSerde.from_file("resource-event.avsc", self.topic, None)
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        self.sent: list[dict[str, Any]] = []
        """Every record produced (markers once), in order: the input of an expected state."""

    def partitions(self) -> int:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return len(admin.list_topics(self.topic, timeout=10).topics[self.topic].partitions)

    def record(self, event_type: str, **fields: Any) -> dict[str, Any]:
        body = fields.pop("object", None)
        return {
            "type": event_type,
            "cluster": "test-cluster",
            "instance_id": fields.get("instance_id"),
            "group": fields.get("group", ""),
            "version": fields.get("version", "v1"),
            "kind": fields.get("kind", "Pod"),
            "namespace": fields.get("namespace"),
            "name": fields.get("name"),
            "uid": body["metadata"]["uid"] if body else None,
            "resource_version": body["metadata"]["resourceVersion"] if body else "0",
            "observed_at": datetime.now(UTC),
            "list_id": fields.get("list_id"),
            "list_reason": fields.get("list_reason"),
            "object": json.dumps(body) if body is not None else None,
        }

    def watch(self, event_type: str, body: dict[str, Any], list_id: str | None = None) -> None:
        meta = body["metadata"]
        instance = meta["labels"]["k8splugin.io/rb-instance-id"]
        record = self.record(
            event_type,
            instance_id=instance,
            kind=body["kind"],
            namespace=meta["namespace"],
            name=meta["name"],
            object=body,
            list_id=list_id,
        )
        self.sent.append(record)
        self.producer.produce(self.topic, key=instance.encode(), value=self.serde.encode(record))

    def marker(self, event_type: str, list_id: str, kind: str = "Pod") -> None:
        record = self.record(event_type, list_id=list_id, kind=kind, list_reason="initial")
        self.sent.append(record)
        for partition in range(self.partitions()):
            self.producer.produce(
                self.topic, key=None, value=self.serde.encode(record), partition=partition
            )

    def raw(self, key: bytes | None, value: bytes) -> None:
        self.producer.produce(self.topic, key=key, value=value)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


@dataclass
class Delivered:
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return self.headers["ce_type"]


class TopicReader:
    """A read_committed reader of every partition of a topic, accumulating what it saw."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        admin = AdminClient({"bootstrap.servers": bootstrap})
        wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 30, f"topic {topic}")
        count = len(admin.list_topics(topic, timeout=10).topics[topic].partitions)
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(count)])
        self.seen: list[Delivered] = []

    def poll(self) -> None:
        for message in self.consumer.consume(1000, 0.2):
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            headers = {k: v.decode() for k, v in (message.headers() or [])}
            value = message.value() or b""
            if headers.get("ce_specversion"):
                event = from_kafka(message.key(), value, message.headers())
                data = event.get_data()
                assert isinstance(data, dict)
            else:
                data = json.loads(value)
            self.seen.append(
                Delivered(
                    message.partition() or 0, message.offset() or 0, message.key(), headers, data
                )
            )

    def deltas(self, instance: str | None = None) -> list[Delivered]:
        return [
            d
            for d in self.seen
            if d.type == DELTA_TYPE and (instance is None or d.headers["ce_subject"] == instance)
        ]

    def of_type(self, suffix: str) -> list[Delivered]:
        return [d for d in self.seen if d.headers.get("ce_type", "").endswith(suffix)]

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        def check() -> bool:
            self.poll()
            return condition()

        wait_until(check, timeout_s, what)

    def close(self) -> None:
        self.consumer.close()


def changes(delivered: Delivered) -> dict[str, list[str]]:
    rc = delivered.data["resource-changes"]
    return {kind: sorted(entry["name"] for entry in rc[kind]) for kind in rc}


def fold_state(deltas: list[Delivered]) -> dict[str, dict[str, Any]]:
    """The instance's resources (name → status) as a subscriber rebuilds them from deltas."""
    state: dict[str, dict[str, Any]] = {}
    for delta in deltas:
        rc = delta.data["resource-changes"]
        for entry in rc["deleted"]:
            assert entry["name"] in state, f"deleted unknown {entry['name']} in {delta.headers}"
            del state[entry["name"]]
        for entry in rc["created"]:
            assert entry["name"] not in state, f"created known {entry['name']} in {delta.headers}"
            state[entry["name"]] = entry["status"]
        for entry in rc["modified"]:
            assert entry["name"] in state, f"modified unknown {entry['name']}"
            state[entry["name"]] = entry["status"]
    return state
