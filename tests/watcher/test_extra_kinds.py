"""Kinds asked for by subscriptions (``extra-resource-types``) are watched while wanted.

The subscription arrives on the real subscriptions topic before its CRD exists, so the
watcher must wait for the kind to be served, pick it up, and stop watching it again once the
subscription is deleted (a tombstone on the compacted topic).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from deltawatch.kafka_clients import make_admin, make_producer
from deltawatch.settings import CommonSettings
from deltawatch.topics import contract_topics, ensure_topics
from deltawatch_tools.localkube import ops
from tests.watcher.conftest import (
    LABEL,
    PublishedEvents,
    WatcherProcess,
    configmap,
    list_ends,
    watcher_env,
)

pytestmark = [pytest.mark.kafka, pytest.mark.kube]

StartWatcher = Callable[..., WatcherProcess]


@pytest.fixture
def crd_group(kube_api: ApiClient) -> Iterator[str]:
    group = f"t{secrets.token_hex(4)}.deltawatch.test"
    yield group
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
    }
    ops.delete(kube_api, crd, grace_period_seconds=None, missing_ok=True)


def create_widget_crd(api: ApiClient, group: str) -> None:
    ops.create(
        api,
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        },
    )

    def served() -> bool:
        try:
            document = ops.request(api, "GET", f"/apis/{group}/v1")
        except Exception:
            return False
        return any(r["kind"] == "Widget" for r in document["resources"])

    ops.wait_until(served, what="the Widget CRD to be served")


def widget(group: str, namespace: str, name: str, instance: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: instance}},
        "spec": {"size": 3},
    }


def publish_subscription(settings: CommonSettings, key: str, value: dict[str, Any] | None) -> None:
    producer = make_producer(settings)
    producer.produce(
        settings.subscriptions_topic,
        key=key.encode(),
        value=json.dumps(value).encode() if value is not None else None,
    )
    assert producer.flush(10) == 0


def watches(watcher: WatcherProcess) -> float:
    for line in watcher.metrics().splitlines():
        if line.startswith("deltawatch_watcher_watches "):
            return float(line.split()[1])
    return -1.0


def test_extra_kind_of_a_subscription_is_watched_then_dropped(
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    kafka_settings: CommonSettings,
    events: PublishedEvents,
    start_watcher: StartWatcher,
    crd_group: str,
) -> None:
    watcher = start_watcher(watcher_env(topic_env, kubeconfig, kube_namespace))
    assert watches(watcher) == 2  # ConfigMap and Pod
    subscription = {
        "name": "sub-1",
        "instance-id": "inst-1",
        "callback-url": "http://127.0.0.1:9/notify",
        "min-notify-interval": 0,
        "metadata": {},
        "extra-resource-types": [{"group": crd_group, "version": "v1", "kind": "Widget"}],
    }
    publish_subscription(kafka_settings, "inst-1/sub-1", subscription)
    ops.wait_until(lambda: watches(watcher) == 3, what="the Widget watch to start")

    # The kind is not served yet; the watcher keeps asking until the CRD appears.
    create_widget_crd(kube_api, crd_group)
    ops.create(kube_api, widget(crd_group, kube_namespace, "w1", "inst-1"))
    events.poll()
    parts = len(events.partitions)
    events.wait_for(lambda rs: list_ends(rs, "Widget", parts), timeout_s=60, what="Widget list")
    events.wait_for(
        lambda rs: any(r["name"] == "w1" for r in rs if r["kind"] == "Widget"),
        what="widget w1",
    )
    (seen,) = [r for r in events.records if r["name"] == "w1"]
    assert seen["type"] in ("LISTED", "ADDED")
    assert (seen["group"], seen["version"], seen["_key"]) == (crd_group, "v1", "inst-1")
    ops.create(kube_api, widget(crd_group, kube_namespace, "w2", "inst-1"))
    events.wait_for(lambda rs: events.objects("ADDED", name="w2"), what="widget w2 ADDED")

    # The subscription goes: the watch stops, and later widgets are not published.
    publish_subscription(kafka_settings, "inst-1/sub-1", None)
    ops.wait_until(lambda: watches(watcher) == 2, what="the Widget watch to stop")
    ops.create(kube_api, widget(crd_group, kube_namespace, "w3", "inst-1"))
    ops.create(kube_api, configmap(kube_namespace, "after-w3", "inst-1"))
    events.wait_for(lambda rs: events.objects("ADDED", name="after-w3"), what="sentinel")
    assert not [r for r in events.records if r["name"] == "w3"]
    assert watcher.stop() == 0


def test_unusable_subscription_values_are_skipped(
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    kafka_settings: CommonSettings,
    start_watcher: StartWatcher,
) -> None:
    env = watcher_env(topic_env, kubeconfig, kube_namespace)
    watcher = start_watcher(env)
    producer = make_producer(kafka_settings)
    producer.produce(kafka_settings.subscriptions_topic, key=b"i/bad", value=b"{not json")
    producer.produce(
        kafka_settings.subscriptions_topic,
        key=b"i/odd",
        value=json.dumps({"extra-resource-types": [{"kind": "Pod"}]}).encode(),
    )
    assert producer.flush(10) == 0
    ops.wait_until(
        lambda: (
            "subscription value ignored" in watcher.logs()
            and watcher.logs().count("subscription value ignored") >= 2
        ),
        what="both values to be logged and skipped",
    )
    assert watches(watcher) == 2
    assert watcher.stop() == 0


def test_subscriptions_present_at_start_are_listed_before_ready(
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    kafka_settings: CommonSettings,
    events: PublishedEvents,
    start_watcher: StartWatcher,
    crd_group: str,
) -> None:
    create_widget_crd(kube_api, crd_group)
    ops.create(kube_api, widget(crd_group, kube_namespace, "w0", "inst-7"))
    ops.create(kube_api, configmap(kube_namespace, "c0", "inst-7"))
    ensure_topics(make_admin(kafka_settings), [contract_topics(kafka_settings)["subscriptions"]])
    extra = [{"group": crd_group, "version": "v1", "kind": "Widget"}]
    publish_subscription(
        kafka_settings, "inst-7/s", {"instance-id": "inst-7", "extra-resource-types": extra}
    )

    watcher = start_watcher(watcher_env(topic_env, kubeconfig, kube_namespace))
    # Ready was answered only once every kind's first list was acknowledged by Kafka:
    # what the topic held at that moment already contains both complete lists.
    records = events.read_to_end()
    parts = len(events.partitions)
    for kind in ("Widget", "ConfigMap", "Pod"):
        assert list_ends(records, kind, parts), f"no complete {kind} list before ready"
    assert {r["name"] for r in records if r["type"] == "LISTED"} == {"w0", "c0"}
    assert watcher.stop() == 0
