"""Kafka stopped for a few seconds loses no event: the watcher buffers, retries, delivers.

The broker here is a dedicated local KRaft broker (own run dir, own ports), killed with
SIGKILL and resumed on the same ports with its data, so that other test sessions sharing
the machine's broker are not disturbed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from deltawatch.settings import CommonSettings
from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from deltawatch_tools.localkube import ops
from tests.watcher.conftest import (
    PublishedEvents,
    WatcherProcess,
    configmap,
    fold,
    watcher_env,
)

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.reliability]

StartWatcher = Callable[..., WatcherProcess]


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker()
    run = tmp_path_factory.mktemp("kafka-run")
    broker.run = run  # jars and storage template stay shared; run state is this test's
    broker.state_file = run / "broker.json"
    broker.lock_file = run / "lock"
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def outage_env(
    own_broker: LocalKafkaBroker, topic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    state = own_broker.status()
    assert state is not None
    env = {**topic_env, "KAFKA_BOOTSTRAP_SERVERS": state.bootstrap}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_kafka_down_for_seconds_loses_no_event(
    own_broker: LocalKafkaBroker,
    outage_env: dict[str, str],
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    start_watcher: StartWatcher,
) -> None:
    events = PublishedEvents(CommonSettings())
    watcher = start_watcher(watcher_env(outage_env, kubeconfig, kube_namespace))
    try:
        ops.create(kube_api, configmap(kube_namespace, "before", "inst-0", v="0"))
        events.wait_for(lambda rs: events.objects("ADDED", name="before"), what="ADDED before")

        state = own_broker.kill()
        # (instance, type, name, resourceVersion): Kafka orders per instance (partition key)
        expected: list[tuple[str, str, str, str]] = []
        down_since = time.monotonic()
        i = 0
        while time.monotonic() - down_since < 5.0:
            name, inst = f"during-{i}", f"inst-{i % 3}"
            created = ops.create(kube_api, configmap(kube_namespace, name, inst, v="1"))
            expected.append((inst, "ADDED", name, created["metadata"]["resourceVersion"]))
            created["data"] = {"v": "2"}
            updated = ops.update(kube_api, created)
            expected.append((inst, "MODIFIED", name, updated["metadata"]["resourceVersion"]))
            if i % 2:
                ops.delete(kube_api, updated)
                expected.append((inst, "DELETED", name, "?"))
            i += 1
            time.sleep(0.1)  # pace the writes over the outage window
        own_broker.resume(state)

        def during(rs: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
            return [
                (r["_key"], r["type"], r["name"], r["resource_version"])
                for r in rs
                if (r["name"] or "").startswith("during-")
            ]

        def per_instance(
            items: list[tuple[str, str, str, str]], with_rv: bool
        ) -> dict[str, list[tuple[str, ...]]]:
            grouped: dict[str, list[tuple[str, ...]]] = {}
            for inst, event_type, name, rv in items:
                entry = (event_type, name, rv) if with_rv and rv != "?" else (event_type, name)
                grouped.setdefault(inst, []).append(entry)
            return grouped

        events.wait_for(
            lambda rs: per_instance(during(rs), False) == per_instance(expected, False),
            timeout_s=60,
            what=f"{len(expected)} events after the outage",
        )
        # Each instance's events arrive once, in the order they happened, with their versions.
        deleted_rv = [
            (i, t, n, "?" if t == "DELETED" else rv) for i, t, n, rv in during(events.records)
        ]
        assert per_instance(deleted_rv, True) == per_instance(expected, True)
        current = ops.list_objects(kube_api, "v1", "ConfigMap", kube_namespace)["items"]
        assert {k[2] for k in fold(events.records)} == {o["metadata"]["name"] for o in current}
        assert watcher.stop() == 0
    finally:
        events.close()


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_kafka_down_blocks_the_watch_instead_of_growing_memory(
    own_broker: LocalKafkaBroker,
    outage_env: dict[str, str],
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    start_watcher: StartWatcher,
) -> None:
    bound = 64 * 1024
    env = watcher_env(
        outage_env,
        kubeconfig,
        kube_namespace,
        DELTAWATCH_WATCHER_QUEUE_MAX_BYTES=str(bound),
        # librdkafka's own buffer, the stage before the outbox, made small too.
        DELTAWATCH_KAFKA_CONFIG=json.dumps({"queue.buffering.max.messages": 20}),
    )
    events = PublishedEvents(CommonSettings())
    watcher = start_watcher(env)
    try:
        state = own_broker.kill()
        blob = "x" * 20_000
        peak_bytes = peak_depth = 0.0
        for i in range(120):
            ops.create(kube_api, configmap(kube_namespace, f"heavy-{i}", f"inst-{i % 4}", b=blob))
            metrics = watcher.metrics()
            peak_bytes = max(peak_bytes, gauge(metrics, "deltawatch_watcher_queue_bytes"))
            peak_depth = max(peak_depth, gauge(metrics, "deltawatch_watcher_queue_depth"))
        # 120 x 20 kB did not fit in librdkafka (20 records) plus the outbox (64 kB): the
        # outbox filled to its bound and the watch thread waited instead of buffering more.
        assert peak_depth > 0
        assert peak_bytes <= bound
        # SIGTERM while Kafka is down and everything is full still exits 0 within 10 s;
        # what was not acknowledged comes back with the next start's initial list.
        assert watcher.stop() == 0
        own_broker.resume(state)
        watcher = start_watcher(env)
        expected = {
            o["metadata"]["name"]
            for o in ops.list_objects(kube_api, "v1", "ConfigMap", kube_namespace)["items"]
        }
        events.wait_for(
            lambda rs: {k[2] for k in fold(rs)} == expected,
            timeout_s=90,
            what="every ConfigMap published after the outage",
        )
        assert watcher.stop() == 0
    finally:
        events.close()
