"""The watcher survives what the API server and the network do to watches, losing nothing.

These tests run on a dedicated local API server (its own etcd and kube-apiserver in a
temporary state dir) because they restart it and change its flags; the shared server other
test sessions use is left alone. Each check folds what the watcher published the way the
differ does (:func:`fold`) and compares the result with the server's own state.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from deltawatch_tools.localkube import KubeOptions, LocalKubeServer, ops
from services.watcher.kinds import WatchTarget
from services.watcher.listwatch import ListBegan, Listed, ListEnded, ListWatch, Observation
from tests.watcher.conftest import (
    PublishedEvents,
    WatcherProcess,
    configmap,
    fold,
    list_ends,
    watch_event_ids,
    watcher_env,
)
from tests.watcher.fault_proxy import FaultProxy

pytestmark = [pytest.mark.kafka, pytest.mark.kube, pytest.mark.reliability]

StartWatcher = Callable[..., WatcherProcess]
# The server ends each watch that names no timeout after 2 to 4 s.
MIN_REQUEST_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKubeServer]:
    server = LocalKubeServer(tmp_path_factory.mktemp("kube-state"))
    server.ensure_running(KubeOptions(min_request_timeout=MIN_REQUEST_TIMEOUT_S))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_api(own_server: LocalKubeServer) -> Iterator[ApiClient]:
    api = own_server.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(own_api: ApiClient, request: pytest.FixtureRequest) -> str:
    name = f"t-{request.node.name.replace('_', '-')[:40].strip('-')}"
    ops.create_namespace(own_api, name)
    return name


def proxied_kubeconfig(server: LocalKubeServer, proxy: FaultProxy, path: Path) -> Path:
    config = json.loads(server.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path.write_text(json.dumps(config))
    return path


def server_state(api: ApiClient, namespace: str) -> dict[tuple[str, str, str], str]:
    page = ops.list_objects(api, "v1", "ConfigMap", namespace, label_selector=LABEL_SELECTOR)
    return {
        ("ConfigMap", namespace, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for o in page["items"]
    }


LABEL_SELECTOR = "k8splugin.io/rb-instance-id"


def folded_state(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    return {k: r["resource_version"] for k, r in fold(records).items() if k[0] == "ConfigMap"}


class Writer:
    """Keeps changing ConfigMaps (create, update, delete) in a thread until stopped,
    retrying each step while the API server is unreachable."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.stop = threading.Event()
        self.steps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _retry(self, action: Callable[[], Any]) -> None:
        while not self.stop.is_set():
            try:
                action()
                return
            except Exception:
                self.stop.wait(0.2)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            name = f"w-{i % 7}"
            manifest = configmap(self.namespace, name, f"inst-{i % 3}", step=str(i))

            def upsert(m: dict[str, Any] = manifest) -> None:
                try:
                    ops.create(self.api, m)
                except Exception:
                    current = ops.get(self.api, m)
                    current["data"] = m["data"]
                    ops.update(self.api, current)

            self._retry(upsert)
            if i % 5 == 4:
                self._retry(
                    lambda m=manifest: ops.delete(self.api, m, missing_ok=True)  # type: ignore[misc]
                )
            i += 1
            self.steps = i
            self.stop.wait(0.05)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


def wait_converged(events: PublishedEvents, api: ApiClient, namespace: str) -> None:
    expected = server_state(api, namespace)
    events.wait_for(
        lambda rs: folded_state(rs) == expected,
        timeout_s=60,
        what=f"the published state to match the server's {len(expected)} objects",
    )


def assert_no_duplicate_watch_events(records: list[dict[str, Any]]) -> None:
    ids = watch_event_ids(records)
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"watch events published twice: {sorted(duplicates)[:5]}"


def test_apiserver_restart_mid_stream_loses_and_repeats_nothing(
    own_server: LocalKubeServer,
    own_api: ApiClient,
    namespace: str,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
) -> None:
    watcher = start_watcher(watcher_env(topic_env, own_server.kubeconfig, namespace))
    with Writer(own_api, namespace) as writer:
        ops.wait_until(lambda: writer.steps >= 10, what="writes before the restart")
        own_server.restart_apiserver()
        steps_after_restart = writer.steps
        ops.wait_until(
            lambda: writer.steps >= steps_after_restart + 10, what="writes after the restart"
        )
    wait_converged(events, own_api, namespace)
    assert_no_duplicate_watch_events(events.records)
    metrics = watcher.metrics()
    assert "deltawatch_watcher_watch_restarts_total" in metrics
    assert watcher.stop() == 0


def test_gone_after_a_network_gap_relists_and_reveals_deletes(
    own_server: LocalKubeServer,
    own_api: ApiClient,
    namespace: str,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
    tmp_path: Path,
) -> None:
    for name in ("keep", "doomed", "changed"):
        ops.create(own_api, configmap(namespace, name, "inst-1", v="1"))
    upstream = int(own_server.server_url.rsplit(":", 1)[1])
    proxy = FaultProxy(upstream)
    try:
        kubeconfig = proxied_kubeconfig(own_server, proxy, tmp_path / "kubeconfig")
        watcher = start_watcher(watcher_env(topic_env, kubeconfig, namespace))
        events.poll()
        parts = len(events.partitions)
        events.wait_for(lambda rs: list_ends(rs, "ConfigMap", parts), what="first list")

        proxy.cut()  # the watcher is blind from here ...
        ops.delete(own_api, configmap(namespace, "doomed", "inst-1"))
        changed = ops.get(own_api, configmap(namespace, "changed", "inst-1"))
        changed["data"] = {"v": "2"}
        ops.update(own_api, changed)
        ops.create(own_api, configmap(namespace, "born", "inst-1", v="1"))
        # ... and a restarted API server has forgotten the history it would need to
        # replay: its fresh watch cache answers 410 Gone to the watcher's resourceVersion.
        own_server.restart_apiserver()
        own_server.compact_etcd()
        proxy.restore()

        events.wait_for(lambda rs: len(list_ends(rs, "ConfigMap", parts)) == 2, what="relist")
    finally:
        proxy.close()
    relist = [r for r in events.records if r["type"] == "LIST_BEGIN" and r["kind"] == "ConfigMap"]
    assert {r["list_reason"] for r in relist} == {"initial", "expired"}
    second = next(r["list_id"] for r in relist if r["list_reason"] == "expired")
    relisted = {r["name"] for r in events.objects("LISTED") if r["list_id"] == second}
    assert relisted == {"keep", "changed", "born"}
    # The delete happened in the gap: no watch event tells of it, only the relist does.
    assert not events.objects("DELETED", name="doomed")
    assert "doomed" not in {k[2] for k in fold(events.records)}
    assert folded_state(events.records) == server_state(own_api, namespace)
    assert_no_duplicate_watch_events(events.records)
    assert 'deltawatch_watcher_relists_total{kind="v1/ConfigMap",reason="expired"} 1.0' in (
        watcher.metrics()
    )
    assert watcher.stop() == 0


def test_server_closing_watches_every_few_seconds_loses_nothing(
    own_server: LocalKubeServer,
    own_api: ApiClient,
    namespace: str,
    topic_env: dict[str, str],
    events: PublishedEvents,
    start_watcher: StartWatcher,
) -> None:
    # DELTAWATCH_WATCH_TIMEOUT_S=0: the watcher names no timeout, so the server's
    # --min-request-timeout (2 s, so 2 to 4 s) decides when each watch ends.
    env = watcher_env(topic_env, own_server.kubeconfig, namespace, DELTAWATCH_WATCH_TIMEOUT_S="0")
    watcher = start_watcher(env)
    with Writer(own_api, namespace):
        ops.wait_until(
            # Ended cleanly ("timeout") or cut mid-chunk ("error"): the server closed it.
            lambda: (
                sum(_counter(watcher.metrics(), "ConfigMap", c) for c in ("timeout", "error")) >= 4
            ),
            timeout=40,
            interval=0.5,
            what="three watches ended by the server",
        )
    wait_converged(events, own_api, namespace)
    assert_no_duplicate_watch_events(events.records)
    # One list only: every reconnect resumed from the newest resourceVersion.
    assert len([r for r in events.records if r["type"] == "LIST_BEGIN"]) == 2 * len(
        events.partitions
    )  # ConfigMap and Pod, once each
    assert watcher.stop() == 0


def _counter(metrics: str, kind: str, cause: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if (
            line.startswith("deltawatch_watcher_watch_restarts_total{")
            and f'kind="v1/{kind}"' in line
            and f'cause="{cause}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_stale_continue_token_restarts_the_list(
    own_server: LocalKubeServer, own_api: ApiClient, namespace: str
) -> None:
    """The list+watch layer alone, in process: a continue token whose resourceVersion was
    compacted away answers 410, and the list starts over (new id, reason expired)."""
    for i in range(6):
        ops.create(own_api, configmap(namespace, f"page-{i}", "inst-1"))
    target = WatchTarget("", "v1", "ConfigMap", namespace)
    listwatch = ListWatch(own_api, target, LABEL_SELECTOR, page_size=2)
    seen: list[Observation] = []
    for observation in listwatch.run():
        seen.append(observation)
        if len(seen) == 3:  # LIST_BEGIN and the first page: compact the list's revision away
            ops.create(own_api, configmap(namespace, "page-late", "inst-1"))
            own_server.compact_etcd()
        if isinstance(observation, ListEnded):
            listwatch.stop.set()
    begins = [o for o in seen if isinstance(o, ListBegan)]
    assert [b.run.reason for b in begins] == ["initial", "expired"]
    first, second = begins
    assert first.run.list_id != second.run.list_id
    ends = [o for o in seen if isinstance(o, ListEnded)]
    assert [e.run.list_id for e in ends] == [second.run.list_id]  # the first never ends
    relisted = [
        o.obj["metadata"]["name"] for o in seen if isinstance(o, Listed) and o.run == second.run
    ]
    assert sorted(relisted) == [*(f"page-{i}" for i in range(6)), "page-late"]
    assert all(o.obj["kind"] == "ConfigMap" for o in seen if isinstance(o, Listed))
