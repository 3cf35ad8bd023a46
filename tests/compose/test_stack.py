"""The compose stack end to end, the way a user runs it (CONTRACT §8, issue 14).

Everything is real and in containers: Kafka, the three workers built from services/Dockerfile,
two clusters of etcd + kube-apiserver with a watcher each (``kube`` profile: ``compose`` and
``west``, CONTRACT §10) and the callback sink. From the host the test only
does what a user does: produce commands to the published Kafka port, change objects in the
stack's API server, and read the sink's ``GET /received`` and the delta topic.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from kubernetes.client import ApiClient

from deltawatch.cloud_events import DELTA_TYPE, from_kafka, header_value
from deltawatch_tools.compose_stack import ComposeStack
from deltawatch_tools.localkube import ops
from tests.compose.waiting import STACK_SETUP_TIMEOUT_S, await_condition

pytestmark = [pytest.mark.compose, pytest.mark.timeout(STACK_SETUP_TIMEOUT_S)]

LABEL = "k8splugin.io/rb-instance-id"
COMMANDS = "deltawatch.subscription-commands"
RESULTS = "deltawatch.subscription-command-results"
SUBSCRIPTIONS = "deltawatch.subscriptions"
DELTAS = "deltawatch.resource-deltas"


# -- what a user does from the host ---------------------------------------------------------------


def _consume(
    stack: ComposeStack, topic: str, found: Callable[[Any], bool], what: str, timeout_s: float
) -> Any:
    """First message of ``topic`` (from the beginning) for which ``found(message)`` holds."""
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"compose-test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if found(message):
                return message
    finally:
        consumer.close()
    raise AssertionError(f"no {what} on {topic} within {timeout_s:.0f} s")


def _command(stack: ComposeStack, command: dict[str, Any]) -> dict[str, Any]:
    """Produce a CONTRACT §4 command and return its result."""
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True})
    producer.produce(
        COMMANDS, key=command["instance-id"].encode(), value=json.dumps(command).encode()
    )
    assert producer.flush(30) == 0
    key = command["command-id"].encode()
    message = _consume(stack, RESULTS, lambda m: m.key() == key, "command result", 60)
    result: dict[str, Any] = json.loads(message.value())
    return result


def _subscribe(stack: ComposeStack, instance: str, path: str, secret: str | None = None) -> None:
    subscription: dict[str, Any] = {
        "name": "compose-test",
        "callback-url": f"http://callback-sink:8080{path}",
        "min-notify-interval": 0,
        "metadata": {"owner": "compose-test"},
    }
    if secret is not None:
        subscription["secret"] = secret
    result = _command(
        stack,
        {
            "command-id": f"c-{uuid.uuid4().hex[:12]}",
            "action": "create",
            "instance-id": instance,
            "subscription": subscription,
        },
    )
    assert result["status"] == "accepted", result


def _received(stack: ComposeStack, path: str) -> list[dict[str, Any]]:
    reply = httpx.get(stack.url("callback-sink", "/received"), params={"path": path}, timeout=5)
    reply.raise_for_status()
    records: list[dict[str, Any]] = reply.json()
    return records


def _entries(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [entry for record in records for entry in record["body"]["resource-changes"][kind] or []]


def _names(records: list[dict[str, Any]], kind: str) -> set[str]:
    return {entry["name"] for entry in _entries(records, kind)}


def _config_map(namespace: str, name: str, instance: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: instance}},
        "data": data,
    }


@pytest.fixture
def namespace(stack_kube_api: ApiClient) -> Iterator[str]:
    name = f"compose-{uuid.uuid4().hex[:8]}"
    ops.create_namespace(stack_kube_api, name)
    yield name
    ops.delete_namespace(stack_kube_api, name)


@pytest.fixture
def west_namespace(stack_west_kube_api: ApiClient, namespace: str) -> Iterator[str]:
    """``namespace``, created in the west cluster too."""
    ops.create_namespace(stack_west_kube_api, namespace)
    yield namespace
    ops.delete_namespace(stack_west_kube_api, namespace)


def _ready(stack: ComposeStack, worker: str) -> bool:
    return httpx.get(stack.url(worker, "/readyz"), timeout=3).status_code == 200


# -- the tests -----------------------------------------------------------------------------------


def test_stack_comes_up_healthy_with_the_sample_subscription(compose_stack: ComposeStack) -> None:
    listing = compose_stack.run("ps", "--all", "--format", "json", capture=True).stdout
    states = {c["Service"]: c for c in map(json.loads, listing.strip().splitlines())}
    workers = ("watcher", "watcher-west", "differ", "notifier")
    for service in ("kafka", *workers, "callback-sink"):
        assert states[service]["State"] == "running", states[service]
        assert states[service]["Health"] == "healthy", states[service]
    for service in ("etcd", "kube-apiserver", "etcd-west", "kube-apiserver-west"):
        assert states[service]["State"] == "running", states[service]
    assert states["sample-subscription"]["State"] == "exited"
    assert states["sample-subscription"]["ExitCode"] == 0
    for worker in workers:
        await_condition(f"{worker} /readyz", lambda w=worker: _ready(compose_stack, w), 120)
    key = b"sample-instance/sample-subscription"
    state = _consume(compose_stack, SUBSCRIPTIONS, lambda m: m.key() == key, "sample", 60)
    assert json.loads(state.value())["callback-url"] == "http://callback-sink:8080/notify/sample"


def test_cluster_change_reaches_the_sink_and_the_delta_topic(
    compose_stack: ComposeStack, stack_kube_api: ApiClient, namespace: str
) -> None:
    instance, path = f"inst-{uuid.uuid4().hex[:8]}", f"/notify/{uuid.uuid4().hex[:8]}"
    _subscribe(compose_stack, instance, path)
    config = _config_map(namespace, "web-config", instance, {"mode": "blue"})
    ops.create(stack_kube_api, config)
    await_condition(
        "the created callback",
        lambda: "web-config" in _names(_received(compose_stack, path), "created"),
        90,
    )
    body = _received(compose_stack, path)[0]["body"]
    assert set(body) == {"instance-id", "subscription-name", "metadata", "resource-changes"}
    assert body["instance-id"] == instance
    assert body["subscription-name"] == "compose-test"
    assert body["metadata"] == {"owner": "compose-test"}
    assert set(body["resource-changes"]) == {"created", "deleted", "modified"}
    created = body["resource-changes"]["created"][0]
    assert created["namespace"] == namespace
    assert created["cluster"] == "compose"
    assert created["GVK"] == {"Group": "", "Version": "v1", "Kind": "ConfigMap"}
    assert created["status"]["data"] == {"mode": "blue"}

    ops.patch(stack_kube_api, config, {"data": {"mode": "green"}})
    await_condition(
        "the modified callback",
        lambda: "web-config" in _names(_received(compose_stack, path), "modified"),
        60,
    )
    ops.delete(stack_kube_api, config)
    await_condition(
        "the deleted callback",
        lambda: "web-config" in _names(_received(compose_stack, path), "deleted"),
        60,
    )

    subject = instance.encode()

    def is_delta(message: Any) -> bool:
        return bool(
            message.key() == subject and header_value(message.headers(), "ce_type") == DELTA_TYPE
        )

    message = _consume(compose_stack, DELTAS, is_delta, "delta CloudEvent", 30)
    event = from_kafka(message.key(), message.value(), message.headers())
    assert event.get_type() == DELTA_TYPE
    assert event.get_subject() == instance
    assert event.get_source() == "/deltawatch/clusters/compose"
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["instance-id"] == instance
    assert set(data["resource-changes"]) == {"created", "deleted", "modified"}


def test_two_clusters_one_pipeline_keep_the_same_name_apart(
    compose_stack: ComposeStack,
    stack_kube_api: ApiClient,
    stack_west_kube_api: ApiClient,
    west_namespace: str,
) -> None:
    # One instance whose ConfigMap has the same namespace and name in both in-stack clusters,
    # each watched by its own watcher (CONTRACT §10): two entries, each naming its cluster.
    instance, path = f"inst-{uuid.uuid4().hex[:8]}", f"/notify/{uuid.uuid4().hex[:8]}"
    _subscribe(compose_stack, instance, path)
    apis = {"compose": stack_kube_api, "west": stack_west_kube_api}
    configs = {
        cluster: _config_map(west_namespace, "twin", instance, {"made-in": cluster})
        for cluster in apis
    }
    for cluster, api in apis.items():
        ops.create(api, configs[cluster])

    def created() -> dict[str, dict[str, Any]]:
        entries = _entries(_received(compose_stack, path), "created")
        return {e["cluster"]: e for e in entries if e["name"] == "twin"}

    await_condition("a created entry from each cluster", lambda: set(created()) == set(apis), 90)
    for cluster, entry in created().items():
        assert entry["namespace"] == west_namespace
        assert entry["status"]["data"] == {"made-in": cluster}, entry

    # A change in one cluster is that cluster's alone: deleting west's twin deletes nothing else.
    ops.delete(stack_west_kube_api, configs["west"])
    await_condition(
        "west's deleted entry",
        lambda: "twin" in _names(_received(compose_stack, path), "deleted"),
        60,
    )
    deleted = _entries(_received(compose_stack, path), "deleted")
    assert [(e["cluster"], e["name"]) for e in deleted] == [("west", "twin")]

    subject = instance.encode()
    for cluster in apis:
        source = f"/deltawatch/clusters/{cluster}"

        def from_cluster(message: Any, source: str = source) -> bool:
            headers = message.headers()
            return bool(
                message.key() == subject
                and header_value(headers, "ce_type") == DELTA_TYPE
                and header_value(headers, "ce_source") == source
            )

        message = _consume(compose_stack, DELTAS, from_cluster, f"delta from {cluster}", 30)
        event = from_kafka(message.key(), message.value(), message.headers())
        assert event.get_source() == source
        data = event.get_data()
        assert isinstance(data, dict)
        assert data["cluster"] == cluster
        twins = [e for e in data["resource-changes"]["created"] or [] if e["name"] == "twin"]
        assert [e["cluster"] for e in twins] == [cluster], data


def test_signed_subscriptions_work_with_the_default_secret_key(
    compose_stack: ComposeStack, stack_kube_api: ApiClient, namespace: str
) -> None:
    # No DELTAWATCH_SECRET_KEY given: the secret-key one-shot generated the notifier's key, so
    # a subscription with a secret is accepted (not "invalid-secret") and its callbacks signed.
    instance, path = f"inst-{uuid.uuid4().hex[:8]}", f"/notify/{uuid.uuid4().hex[:8]}"
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    _subscribe(compose_stack, instance, path, secret)
    ops.create(stack_kube_api, _config_map(namespace, "signed", instance, {"n": "1"}))
    await_condition(
        "the signed callback",
        lambda: "signed" in _names(_received(compose_stack, path), "created"),
        90,
    )
    headers = _received(compose_stack, path)[0]["headers"]
    assert headers["webhook-signature"].startswith("v1,"), headers


def _main_pid(container: str) -> int:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())


def _restart_count(container: str) -> int:
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.RestartCount}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.strip())


@pytest.mark.parametrize("worker", ["watcher", "differ", "notifier"])
def test_a_crashed_worker_is_restarted_and_loses_nothing(
    compose_stack: ComposeStack, stack_kube_api: ApiClient, namespace: str, worker: str
) -> None:
    instance, path = f"inst-{uuid.uuid4().hex[:8]}", f"/notify/{uuid.uuid4().hex[:8]}"
    _subscribe(compose_stack, instance, path)
    ops.create(stack_kube_api, _config_map(namespace, "before", instance, {"n": "0"}))
    await_condition(
        "the callback before the crash",
        lambda: "before" in _names(_received(compose_stack, path), "created"),
        90,
    )
    container = compose_stack.container_id(worker)
    restarts = _restart_count(container)
    # A crash, not a stop: SIGKILL to the worker's process from the host. (`docker kill` and
    # `docker stop` count as stopping it by hand, which a restart policy leaves alone.)
    subprocess.run(["kill", "-KILL", str(_main_pid(container))], check=True)
    during = [f"during-{i}" for i in range(3)]
    for name in during:
        ops.create(stack_kube_api, _config_map(namespace, name, instance, {"n": name}))
    await_condition(f"{worker} restarted", lambda: _restart_count(container) > restarts, 60)
    await_condition(f"{worker} ready again", lambda: _ready(compose_stack, worker), 120)
    ops.create(stack_kube_api, _config_map(namespace, "after", instance, {"n": "9"}))
    expected = {"before", *during, "after"}
    await_condition(
        "every change made around the crash at the sink",
        lambda: expected <= _names(_received(compose_stack, path), "created"),
        120,
    )
    assert _names(_received(compose_stack, path), "deleted") == set()
