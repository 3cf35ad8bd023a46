"""Watcher benchmark (run on demand): initial list of many objects, then a stream of updates.

    .venv/bin/python bench/watcher_throughput.py [--objects 50000] [--updates 10000]

On a dedicated local API server (its own etcd + kube-apiserver in a temporary state dir, so
the shared one is left alone) it creates ``--objects`` labelled objects spread over five kinds
(ConfigMap, Secret, Pod, PersistentVolumeClaim, ServiceAccount), then measures, in the same
run and against the same server:

(a) the real watcher (``python -m services.watcher``): LIST of every kind, each object
    published as an Avro record to Kafka and acknowledged (time from launch until
    ``/readyz``, which waits for each kind's LIST_END to be acknowledged; process start-up
    included, as for (b)), then the update stream (time until
    ``deltawatch_watcher_events_published_total{type="MODIFIED"}`` reaches ``--updates``);
(b) a bare LIST+WATCH loop of the official Python client (typed ``CoreV1Api`` list calls,
    paginated the same way, then ``kubernetes.watch.Watch`` per kind), which decodes the
    objects and does nothing else (time from launch until its lists are done).

Both watch phases observe the same updates, made by writer threads after both are watching;
so the update figures are bounded by how fast the server takes writes, which is printed too.
Printed: events/s of each and the ratio, and peak RSS (``VmHWM``) of each process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: the bare loop's start-up counts towards its list time
    from collections.abc import Callable, Sequence
    from typing import Protocol

    from kubernetes.client import ApiClient, V1ListMeta

    class ListPage(Protocol):
        """A page of any of the listers' ``V1…List`` results (they share no base but BaseModel)."""

        @property
        def items(self) -> Sequence[object]: ...

        @property
        def metadata(self) -> V1ListMeta | None: ...


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LABEL = "k8splugin.io/rb-instance-id"
KINDS = ["v1/ConfigMap", "v1/Secret", "v1/Pod", "v1/PersistentVolumeClaim", "v1/ServiceAccount"]
PAGE_SIZE = 500


def manifest(kind: str, namespace: str, i: int) -> dict[str, Any]:
    metadata = {"name": f"b-{i:06d}", "namespace": namespace, "labels": {LABEL: f"inst-{i % 50}"}}
    body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if kind == "ConfigMap":
        body["data"] = {"config.yaml": f"replicas: {i % 7}\nname: b-{i}\n" * 4}
    elif kind == "Secret":
        body["stringData"] = {"token": uuid.uuid4().hex}
    elif kind == "Pod":
        body["spec"] = {"containers": [{"name": "app", "image": "registry.local/app:1.0"}]}
    elif kind == "PersistentVolumeClaim":
        body["spec"] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        }
    return body


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- (b) the bare official-client loop, run as its own process ------------------------------


def bare_loop(kubeconfig: str, namespace: str, updates: int, report: str) -> None:
    from kubernetes import client, config, watch

    # The client ships without annotations for this function; its result is an ApiClient.
    new_client: Callable[..., ApiClient] = config.new_client_from_config
    api_client = new_client(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    listers: dict[str, Callable[..., ListPage]] = {
        "ConfigMap": core.list_namespaced_config_map,
        "Secret": core.list_namespaced_secret,
        "Pod": core.list_namespaced_pod,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
        "ServiceAccount": core.list_namespaced_service_account,
    }
    versions: dict[str, str | None] = {}
    listed = 0
    for kind, lister in listers.items():
        token = None
        while True:
            page = lister(namespace, label_selector=LABEL, limit=PAGE_SIZE, _continue=token)
            listed += len(page.items)
            if page.metadata is None:
                raise RuntimeError(f"a {kind} list page without metadata: cannot page or watch on")
            versions[kind] = page.metadata.resource_version
            token = page.metadata._continue
            if not token:
                break
    listed_at = time.time()  # the parent measures from the launch of this process
    seen = 0
    lock = threading.Lock()
    done = threading.Event()
    first_at: list[float] = []

    def follow(kind: str) -> None:
        nonlocal seen
        # kubernetes.watch ships without annotations; Watch().stream yields one dict per event.
        new_watch: Callable[[], Any] = watch.Watch
        for event in new_watch().stream(
            listers[kind], namespace, label_selector=LABEL, resource_version=versions[kind]
        ):
            if event["type"] == "MODIFIED":
                with lock:
                    if not first_at:
                        first_at.append(time.monotonic())
                    seen += 1
                    if seen >= updates:
                        done.set()

    for kind in listers:
        threading.Thread(target=follow, args=(kind,), daemon=True).start()
    Path(report + ".watching").write_text("1")
    done.wait()
    watch_s = time.monotonic() - first_at[0]
    Path(report).write_text(
        json.dumps(
            {
                "listed": listed,
                "listed_at": listed_at,
                "watched": seen,
                "watch_s": watch_s,
                "peak_rss_mib": peak_rss_mib(os.getpid()),
            }
        )
    )


# -- the run ------------------------------------------------------------------------------


def published(metrics: str, event_type: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("deltawatch_watcher_events_published_total{") and (
            f'type="{event_type}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=50_000)
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--bare", nargs=4, metavar=("KUBECONFIG", "NS", "UPDATES", "REPORT"))
    args = parser.parse_args()
    if args.bare:
        bare_loop(args.bare[0], args.bare[1], int(args.bare[2]), args.bare[3])
        return

    import httpx

    from deltawatch_tools.local_state import free_port
    from deltawatch_tools.localkafka.broker import LocalKafkaBroker
    from deltawatch_tools.localkube import KubeOptions, LocalKubeServer, ops

    broker = LocalKafkaBroker()
    bootstrap = (broker.status() or broker.start()).bootstrap
    state_dir = Path(tempfile.mkdtemp(prefix="watcher-bench-kube-"))
    server = LocalKubeServer(state_dir)
    server.ensure_running(KubeOptions())
    watcher: subprocess.Popen[bytes] | None = None
    bare: subprocess.Popen[bytes] | None = None
    try:
        api = server.api_client()
        namespace = "bench"
        ops.create_namespace(api, namespace)
        per_kind = args.objects // len(KINDS)
        started = time.monotonic()
        jobs = [(k.split("/")[1], i) for k in KINDS for i in range(per_kind)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: ops.create(api, manifest(job[0], namespace, job[1])), jobs))
        create_s = time.monotonic() - started
        total = per_kind * len(KINDS)
        print(f"created {total} objects ({per_kind} x {len(KINDS)} kinds) in {create_s:.1f}s")

        # (a) the watcher: initial list until ready.
        port = free_port()
        suffix = uuid.uuid4().hex[:8]
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KUBECONFIG": str(server.kubeconfig),
            "DELTAWATCH_NAMESPACES": namespace,
            "DELTAWATCH_RESOURCE_TYPES": ",".join(KINDS),
            "DELTAWATCH_HTTP_PORT": str(port),
            "DELTAWATCH_RESOURCE_EVENTS_TOPIC": f"bench.resource-events.{suffix}",
            "DELTAWATCH_SUBSCRIPTIONS_TOPIC": f"bench.subscriptions.{suffix}",
            "DELTAWATCH_LIST_PAGE_SIZE": str(PAGE_SIZE),
            "DELTAWATCH_LOG_LEVEL": "WARNING",
        }
        started = time.monotonic()
        watcher = subprocess.Popen([sys.executable, "-m", "services.watcher"], env=env, cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if watcher.poll() is not None:
                raise SystemExit(f"watcher exited with {watcher.returncode}")
            time.sleep(0.05)
        watcher_list_s = time.monotonic() - started
        listed = published(httpx.get(f"{base}/metrics").text, "LISTED")

        # (b) the bare loop: its own list, then both watch the same update stream.
        report = str(state_dir / "bare.json")
        bare_launched = time.time()
        bare = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--bare",
                str(server.kubeconfig),
                namespace,
                str(args.updates),
                report,
            ],
            cwd=REPO,
        )
        while not Path(report + ".watching").exists():
            if bare.poll() is not None:
                raise SystemExit(f"bare loop exited with {bare.returncode}")
            time.sleep(0.05)

        def update(i: int) -> None:
            cm = manifest("ConfigMap", namespace, i % per_kind)
            ops.patch(api, cm, {"data": {"rev": str(i)}})

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(update, range(args.updates)))
        write_s = time.monotonic() - started
        while published(httpx.get(f"{base}/metrics").text, "MODIFIED") < args.updates:
            time.sleep(0.05)
        watcher_watch_s = time.monotonic() - started
        bare.wait(timeout=300)
        bare_report = json.loads(Path(report).read_text())
        bare_report["list_s"] = bare_report["listed_at"] - bare_launched
        watcher_rss = peak_rss_mib(watcher.pid)
    finally:
        for process in (watcher, bare):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
        server.stop()

    bare_list_rate = bare_report["listed"] / bare_report["list_s"]
    watcher_list_rate = listed / watcher_list_s
    print(
        f"updates written by 8 threads: {args.updates} in {write_s:.1f}s "
        f"({args.updates / write_s:.0f}/s, the ceiling of both watch figures)"
    )
    print()
    print(f"{'':34}{'watcher':>14}{'bare client':>14}{'ratio':>8}")
    print(
        f"{'initial list, objects/s':34}{watcher_list_rate:>14.0f}{bare_list_rate:>14.0f}"
        f"{watcher_list_rate / bare_list_rate:>8.2f}"
    )
    watcher_cell = f"{listed:.0f} in {watcher_list_s:.1f}s"
    bare_cell = f"{bare_report['listed']} in {bare_report['list_s']:.1f}s"
    print(f"{'  (objects, seconds)':34}{watcher_cell:>14}  {bare_cell:>14}")
    watcher_watch_rate = args.updates / watcher_watch_s
    bare_watch_rate = bare_report["watched"] / bare_report["watch_s"]
    print(
        f"{'update stream, events/s':34}{watcher_watch_rate:>14.0f}{bare_watch_rate:>14.0f}"
        f"{watcher_watch_rate / bare_watch_rate:>8.2f}"
    )
    print(
        f"{'peak RSS, MiB':34}{watcher_rss:>14.0f}{bare_report['peak_rss_mib']:>14.0f}"
        f"{watcher_rss / bare_report['peak_rss_mib']:>8.2f}"
    )
    print("watcher figures: published to Kafka and acknowledged (acks=all), Avro-encoded;")
    print("bare figures: decoded into client models, nothing else.")


if __name__ == "__main__":
    main()
