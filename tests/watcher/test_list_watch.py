"""The watcher against a real kube-apiserver: what it publishes for a list, then a watch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kubernetes.client import ApiClient

from deltawatch_tools.local_state import free_port
from deltawatch_tools.localkube import ops
from tests.watcher.conftest import (
    LABEL,
    PublishedEvents,
    WatcherProcess,
    configmap,
    list_ends,
    obj_of,
    watcher_env,
)

pytestmark = [pytest.mark.kafka, pytest.mark.kube]

StartWatcher = Callable[..., WatcherProcess]


def test_first_list_then_watch(
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
) -> None:
    before = ops.create(kube_api, configmap(kube_namespace, "before", "inst-a", v="1"))
    ops.create(kube_api, configmap(kube_namespace, "unlabelled", None, v="1"))
    watcher = start_watcher(watcher_env(topic_env, kubeconfig, kube_namespace))

    # Ready means the first list is already in Kafka, on every partition.
    events.poll()
    parts = len(events.partitions)
    events.wait_for(lambda rs: list_ends(rs, "ConfigMap", parts), what="LIST_END")
    ends = list_ends(events.records, "ConfigMap", parts)
    assert len(ends) == 1
    list_id = ends[0]
    begins = [r for r in events.records if r["type"] == "LIST_BEGIN" and r["kind"] == "ConfigMap"]
    assert {r["_partition"] for r in begins} == set(events.partitions)
    assert all(r["_key"] is None and r["list_reason"] == "initial" for r in begins)
    assert all(r["namespace"] == kube_namespace for r in begins)
    listed = events.objects("LISTED")
    assert [r["name"] for r in listed] == ["before"]
    record = listed[0]
    assert record["_key"] == "inst-a"
    assert record["instance_id"] == "inst-a"
    assert record["list_id"] == list_id
    assert (record["group"], record["version"], record["kind"]) == ("", "v1", "ConfigMap")
    assert record["uid"] == before["metadata"]["uid"]
    assert record["resource_version"] == before["metadata"]["resourceVersion"]
    assert obj_of(record)["data"] == {"v": "1"}
    assert "managedFields" not in obj_of(record)["metadata"]
    assert obj_of(record)["kind"] == "ConfigMap"
    # Per partition, the LISTED object sits between its partition's LIST_BEGIN and LIST_END.
    same_partition = [r for r in events.records if r["_partition"] == record["_partition"]]
    types = [r["type"] for r in same_partition if r["kind"] == "ConfigMap"]
    assert types == ["LIST_BEGIN", "LISTED", "LIST_END"]

    # Then the watch: create, modify, delete — each exactly once, in order.
    after = ops.create(kube_api, configmap(kube_namespace, "after", "inst-b", v="1"))
    ops.create(kube_api, configmap(kube_namespace, "unlabelled-2", None, v="1"))
    after["data"] = {"v": "2"}
    after = ops.update(kube_api, after)
    ops.delete(kube_api, after)
    events.wait_for(lambda rs: any(r["type"] == "DELETED" for r in rs), what="DELETED")
    watched = events.objects("ADDED", "MODIFIED", "DELETED")
    assert [(r["type"], r["name"]) for r in watched] == [
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "after"),
    ]
    assert all(r["_key"] == "inst-b" and r["list_id"] is None for r in watched)
    assert obj_of(watched[1])["data"] == {"v": "2"}
    assert not any(r["name"] and r["name"].startswith("unlabelled") for r in events.records)

    metrics = watcher.metrics()
    assert 'deltawatch_watcher_relists_total{kind="v1/ConfigMap",reason="initial"} 1.0' in metrics
    assert (
        'deltawatch_watcher_events_published_total{kind="v1/ConfigMap",type="ADDED"} 1.0' in metrics
    )
    assert 'deltawatch_watcher_seconds_since_last_event{kind="v1/ConfigMap"}' in metrics
    assert watcher.stop() == 0


def test_pagination_across_pages(
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
) -> None:
    names = {f"cm-{i:02d}" for i in range(11)}
    for name in names:
        ops.create(kube_api, configmap(kube_namespace, name, f"inst-{name[-1]}", v="1"))
    env = watcher_env(topic_env, kubeconfig, kube_namespace, DELTAWATCH_LIST_PAGE_SIZE="3")
    watcher = start_watcher(env)
    events.poll()
    parts = len(events.partitions)
    events.wait_for(lambda rs: list_ends(rs, "ConfigMap", parts), what="LIST_END")
    listed = events.objects("LISTED")
    assert sorted(r["name"] for r in listed) == sorted(names)  # 4 pages, each object once
    assert len({r["list_id"] for r in listed}) == 1
    for record in listed:
        assert record["_key"] == obj_of(record)["metadata"]["labels"][LABEL]
    assert watcher.stop() == 0


def test_two_megabyte_configmap_passes(
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
) -> None:
    # The API server caps a ConfigMap's data at 1 MiB, but control characters travel as
    # six-byte JSON escapes: 400 000 of them make a watch line (and a LIST item) of 2.4 MB.
    blob_listed = "\x01" * 400_000 + "listed"
    blob_watched = "\x01" * 400_000 + "watched"
    assert len(json.dumps(configmap(kube_namespace, "x", "i", blob=blob_watched))) > 2_000_000
    ops.create(kube_api, configmap(kube_namespace, "big-listed", "inst-big", blob=blob_listed))
    watcher = start_watcher(watcher_env(topic_env, kubeconfig, kube_namespace))
    ops.create(kube_api, configmap(kube_namespace, "big-watched", "inst-big", blob=blob_watched))
    events.wait_for(lambda rs: any(r["type"] == "ADDED" for r in rs), what="the big ADDED")
    (listed,) = events.objects("LISTED", name="big-listed")
    assert obj_of(listed)["data"]["blob"] == blob_listed
    (added,) = events.objects("ADDED", name="big-watched")
    assert obj_of(added)["data"]["blob"] == blob_watched
    assert len(added["object"]) > 2_000_000
    assert watcher.stop() == 0


def test_label_changes_move_the_object_between_instances(
    kube_api: ApiClient,
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
) -> None:
    watcher = start_watcher(watcher_env(topic_env, kubeconfig, kube_namespace))
    cm = ops.create(kube_api, configmap(kube_namespace, "mover", "inst-a", v="1"))
    cm = ops.patch(kube_api, cm, {"metadata": {"labels": {LABEL: "inst-b"}}})
    ops.patch(kube_api, cm, {"metadata": {"labels": {LABEL: None}}})
    events.wait_for(lambda rs: len(events.objects("ADDED", "DELETED")) >= 4, what="4 events")
    # The two instances' records are keyed apart and may sit on different partitions: only
    # the order within each instance is defined.
    routed: dict[str, list[str]] = {}
    for r in events.objects("ADDED", "MODIFIED", "DELETED"):
        routed.setdefault(r["_key"], []).append(r["type"])
    assert routed == {"inst-a": ["ADDED", "DELETED"], "inst-b": ["ADDED", "DELETED"]}
    assert watcher.stop() == 0


def test_not_ready_while_kubernetes_is_unreachable(
    kube_namespace: str,
    kubeconfig: Path,
    topic_env: dict[str, str],
    start_watcher: StartWatcher,
    tmp_path: Path,
) -> None:
    config = json.loads(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(json.dumps(config))
    watcher = start_watcher(watcher_env(topic_env, unreachable, kube_namespace), wait_ready=False)

    def waiting_for() -> list[str] | None:
        try:
            response = httpx.get(f"{watcher.base}/readyz", timeout=2)
        except httpx.HTTPError:
            return None
        assert response.status_code == 503
        pending: list[str] = response.json()["waiting-for"]
        return pending if "subscriptions" not in pending and "kafka" not in pending else None

    pending = ops.wait_until(waiting_for, what="Kafka and subscriptions done, Kubernetes not")
    assert "kubernetes" in pending
    assert f"listed:v1/ConfigMap@{kube_namespace}" in pending
    assert watcher.stop() == 0  # while discovery keeps retrying
