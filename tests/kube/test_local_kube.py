"""What the watcher's tests rely on, seen with the official client against the real server.

Pagination, bookmarks, 410 Gone after a kube-apiserver restart or an etcd compaction, the
status subresource, and the server closing watches itself: each is a promise the local
server makes to the rest of the test suite, so each is checked here first. Nothing waits by
sleeping: every wait is a bounded poll or a server-side watch timeout. Tests that restart
kube-apiserver or change its options do it on a server of their own (``make_kube_server``),
never on the shared one other tests and sessions are watching.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from deltawatch_tools.localkube import (
    KubeOptions,
    LocalKubeServer,
    default_state_dir,
    ensure_binaries,
    ops,
)
from deltawatch_tools.localkube.cli import EXIT_NOT_RUNNING

pytestmark = pytest.mark.kube


def _config_map(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": dict(data),
    }


def _pod(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }


def test_shared_server_is_ready_and_real(kube_server: LocalKubeServer, kube_api: ApiClient) -> None:
    status = kube_server.status()
    assert status.running
    assert status.ready
    assert status.kubeconfig == kube_server.kubeconfig
    assert kube_server.kubeconfig.exists()
    assert client.VersionApi(kube_api).get_code().git_version == "v1.32.13"


def test_second_start_reuses_the_build_cache_and_stops_cleanly(tmp_path: Path) -> None:
    began = time.monotonic()
    binaries = ensure_binaries(progress=None)  # built at collection time: only a digest check
    assert time.monotonic() - began < 5
    assert binaries.kube_apiserver.is_file()

    private_server = LocalKubeServer(tmp_path / "kube", progress=None)
    try:
        began = time.monotonic()
        assert private_server.ensure_running() is True
        startup = time.monotonic() - began
        assert startup < 60, f"start took {startup:.1f}s"
        status = private_server.status()
        assert status.running
        assert status.ready
        assert status.etcd_pid is not None
        assert status.apiserver_pid is not None

        # Another handle (as another process would make) finds and reuses it.
        assert LocalKubeServer(private_server.state_dir, progress=None).ensure_running() is False

        assert private_server.stop() is True
        assert not private_server.status().running
        # Stopped and reaped: no process, not even a zombie, is left.
        assert _proc_state(status.etcd_pid) == "gone"
        assert _proc_state(status.apiserver_pid) == "gone"
        assert not private_server.kubeconfig.exists()
        assert private_server.stop() is False
    finally:
        private_server.stop()


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_list_paginates_with_limit_and_continue(kube_api: ApiClient, kube_namespace: str) -> None:
    names = {f"cm-{i}" for i in range(7)}
    for name in names:
        ops.create(kube_api, _config_map(kube_namespace, name, n=name))

    core = client.CoreV1Api(kube_api)
    seen: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        page = core.list_namespaced_config_map(kube_namespace, limit=2, _continue=token)
        pages += 1
        assert len(page.items) <= 2
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert pages < 20, "pagination does not end"
    assert pages >= 4
    assert sorted(seen) == sorted(names)


def test_watch_with_allow_bookmarks_gets_a_bookmark(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    listed = core.list_namespaced_pod(kube_namespace)
    pod = ops.create(kube_api, _pod(kube_namespace, "bookmarked"))
    # The watch cache sends a bookmark about 2 s before the watch's own timeout (and then
    # every minute), but only with a resourceVersion newer than the last event the watch
    # got, and the Pod cache learns of newer revisions only from Pod events or from etcd
    # progress notifications. A write elsewhere and a consistent LIST (which makes
    # kube-apiserver request progress from etcd) move it past the Pod's revision.
    ops.create(kube_api, _config_map(kube_namespace, "moves-the-revision-on"))
    core.list_namespaced_pod(kube_namespace)
    events = list(
        watch.Watch().stream(
            core.list_namespaced_pod,
            kube_namespace,
            resource_version=listed.metadata.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        )
    )
    types = [e["type"] for e in events]
    assert types[0] == "ADDED"
    bookmarks = [e["raw_object"] for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, f"no BOOKMARK within the 5 s watch: {types}"
    assert int(bookmarks[0]["metadata"]["resourceVersion"]) > int(
        pod["metadata"]["resourceVersion"]
    )


def test_restart_drops_watches_and_old_resource_versions_answer_410(
    make_kube_server: Callable[..., LocalKubeServer],
) -> None:
    server = make_kube_server()
    namespace = "restarted"
    with server.api_client() as api:
        ops.create_namespace(api, namespace)
        first = ops.create(api, _config_map(namespace, "before-restart", v="1"))
        old_rv = first["metadata"]["resourceVersion"]
        ops.update(api, {**first, "data": {"v": "2"}})
        stream = ops.watch_events(
            api, "v1", "ConfigMap", namespace, resource_version=old_rv, timeout_seconds=120
        )
        assert next(stream)["type"] == "MODIFIED"  # the watch is open and serving

        server.restart_apiserver()

        # The open watch ends (cleanly, or with the connection cut) instead of hanging.
        assert _drain(stream) in ("closed", "cut")

    with server.api_client() as api:
        core = client.CoreV1Api(api)

        def watch_from_old_rv() -> int | None:
            try:
                for _ in watch.Watch().stream(
                    core.list_namespaced_config_map,
                    namespace,
                    resource_version=old_rv,
                    timeout_seconds=5,
                ):
                    pass
            except ApiException as exc:
                if exc.status == 429:  # a watch cache still initialising says "retry"
                    return None
                return int(exc.status)
            return 200

        assert ops.wait_until(watch_from_old_rv, timeout=30, what="a watch answer") == 410


def _drain(stream: Iterator[dict[str, Any]]) -> str:
    try:
        for _ in stream:
            pass
    except (ProtocolError, OSError):
        return "cut"
    return "closed"


def test_expired_continue_token_answers_410_after_compaction(
    kube_server: LocalKubeServer, kube_api: ApiClient, kube_namespace: str
) -> None:
    for i in range(5):
        ops.create(kube_api, _config_map(kube_namespace, f"cm-{i}"))
    core = client.CoreV1Api(kube_api)
    first_page = core.list_namespaced_config_map(kube_namespace, limit=2)
    token = first_page.metadata._continue
    assert token
    ops.create(kube_api, _config_map(kube_namespace, "after-first-page"))

    revision = kube_server.compact_etcd()
    assert revision > int(first_page.metadata.resource_version)

    with pytest.raises(ApiException) as gone:
        core.list_namespaced_config_map(kube_namespace, limit=2, _continue=token)
    assert gone.value.status == 410


def test_without_watch_cache_a_compacted_resource_version_answers_410(
    make_kube_server: Callable[..., LocalKubeServer],
) -> None:
    private_server = make_kube_server(
        KubeOptions(watch_cache=False, etcd_compaction_interval="0", min_request_timeout=1)
    )
    with private_server.api_client() as api:
        ops.create_namespace(api, "compacted")
        cm = ops.create(api, _config_map("compacted", "cm", v="1"))
        old_rv = cm["metadata"]["resourceVersion"]
        ops.update(api, {**cm, "data": {"v": "2"}})
        # One more write, so that the compaction point lies beyond old_rv + 1. (Compacting at
        # exactly old_rv + 1 gives 500 "etcd event received with PrevKv=nil", not 410.)
        ops.create(api, _config_map("compacted", "later"))
        private_server.compact_etcd()

        events = list(
            ops.watch_events(
                api, "v1", "ConfigMap", "compacted", resource_version=old_rv, timeout_seconds=10
            )
        )
        assert [e["type"] for e in events] == ["ERROR"]
        assert events[0]["object"]["code"] == 410

        # --min-request-timeout=1: a watch without timeoutSeconds is closed by the server
        # itself after 1-2 s.
        began = time.monotonic()
        list(ops.watch_events(api, "v1", "ConfigMap", "compacted", timeout_seconds=None))
        assert time.monotonic() - began < 15


def test_status_subresource_is_the_only_way_to_change_status(
    kube_api: ApiClient, kube_namespace: str
) -> None:
    pod = ops.create(kube_api, _pod(kube_namespace, "web-0"))
    assert pod["status"]["phase"] == "Pending"  # no scheduler, no kubelet

    # A patch of the main resource silently ignores status...
    ops.patch(kube_api, pod, {"status": {"phase": "Running"}})
    assert ops.get(kube_api, pod)["status"]["phase"] == "Pending"

    # ...the status subresource changes it.
    ready = [{"type": "Ready", "status": "True"}]
    patched = ops.patch_status(kube_api, pod, {"phase": "Running", "conditions": ready})
    assert patched["status"]["phase"] == "Running"
    read = client.CoreV1Api(kube_api).read_namespaced_pod_status("web-0", kube_namespace)
    assert read.status.phase == "Running"
    assert [(c.type, c.status) for c in read.status.conditions] == [("Ready", "True")]


def test_a_story_plays_without_controllers(kube_api: ApiClient, kube_namespace: str) -> None:
    """Deployment -> ReplicaSet -> Pod, status changes, deletes: what the demo does."""
    listed = ops.list_objects(kube_api, "v1", "Pod", kube_namespace)
    labels = {"app": "web"}
    deployment = ops.create(
        kube_api,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": kube_namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": deployment["metadata"]["uid"],
        "controller": True,
    }
    replica_set = ops.create(
        kube_api,
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": kube_namespace, "ownerReferences": [owner]},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": deployment["spec"]["template"],
            },
        },
    )
    pod = ops.create(kube_api, _pod(kube_namespace, "web-1-abcde"))
    pod = ops.patch_status(kube_api, pod, {"phase": "Running"})
    ops.patch_status(kube_api, replica_set, {"replicas": 1, "readyReplicas": 1})
    ops.delete(kube_api, pod)
    assert ops.list_objects(kube_api, "v1", "Pod", kube_namespace)["items"] == []

    events = [
        (e["type"], e["object"]["status"]["phase"], "deletionTimestamp" in e["object"]["metadata"])
        for e in ops.watch_events(
            kube_api,
            "v1",
            "Pod",
            kube_namespace,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=2,
        )
    ]
    # Even with gracePeriodSeconds=0 a Pod delete first sets deletionTimestamp (MODIFIED).
    assert events == [
        ("ADDED", "Pending", False),
        ("MODIFIED", "Running", False),
        ("MODIFIED", "Running", True),
        ("DELETED", "Running", True),
    ]


def test_named_servers_run_side_by_side_from_the_command_line() -> None:
    """``deltawatch kube start --name`` as a user types it: one server per cluster to watch."""
    names = [f"t-{secrets.token_hex(3)}", f"t-{secrets.token_hex(3)}"]
    deltawatch = str(Path(sys.executable).with_name("deltawatch"))

    def kube(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [deltawatch, "kube", *args], capture_output=True, text=True, timeout=120, check=False
        )

    try:
        started = [kube("start", "--name", name) for name in names]
        assert [s.returncode for s in started] == [0, 0], [s.stderr for s in started]
        kubeconfigs = [Path(s.stdout.strip()) for s in started]
        assert kubeconfigs[0] != kubeconfigs[1]
        servers = [LocalKubeServer(default_state_dir(name), progress=None) for name in names]
        assert servers[0].server_url != servers[1].server_url
        # Each is a server of its own: an object made in one is not in the other.
        apis = [server.api_client() for server in servers]
        try:
            ops.create_namespace(apis[0], "only-in-first")
            names_in = [
                {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
                for api in apis
            ]
        finally:
            for api in apis:
                api.close()
        assert "only-in-first" in names_in[0]
        assert "only-in-first" not in names_in[1]
        assert kube("stop", "--name", names[0]).returncode == 0
        assert kube("status", "--name", names[0]).returncode == EXIT_NOT_RUNNING
        assert kube("status", "--name", names[1]).returncode == 0, "the other one runs on"
        refused = kube("start", "--name", "Not/A-Name")
        assert refused.returncode == 1
        assert "server name" in refused.stderr
    finally:
        for name in names:
            kube("stop", "--name", name)
            shutil.rmtree(default_state_dir(name), ignore_errors=True)
