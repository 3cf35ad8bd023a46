"""``deltawatch demo``: the whole pipeline on one machine, told as a story in the terminal.

It starts (or reuses) the local Kafka broker and the local kube-apiserver, the three workers
as separate processes, and a callback sink; subscribes by producing a command to Kafka, as a
user would; plays :class:`~deltawatch_tools.demo.story.InstanceStory`; prints each callback as it
arrives and a summary at the end. Ctrl-C at any point stops what the demo started.
"""

from __future__ import annotations

import itertools
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from kubernetes import config as kube_config
from kubernetes.client import ApiClient

from deltawatch.command_client import send_command
from deltawatch_tools.broker_access import client_settings, pipeline_broker
from deltawatch_tools.callback_sink import CallbackSink, Request, SinkTimeout
from deltawatch_tools.demo.story import InstanceStory
from deltawatch_tools.local_pipeline import (
    WORKERS,
    WorkerProcess,
    start_worker,
    stop_workers,
    wait_ready,
)
from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer, default_state_dir

SUBSCRIPTION = "demo-watch"
INTERVAL_S = 2
CLUSTER_NAMES = ("east", "west", "north")
"""Names of the local API servers (and ``DELTAWATCH_CLUSTER``) of ``--clusters N`` > 1."""


@dataclass
class DemoCluster:
    """One cluster the demo plays its story in: a name, a kubeconfig, a client."""

    name: str
    kubeconfig: str
    api: ApiClient
    server: LocalKubeServer | None = None
    """The local server the demo started, to stop at the end (None: reused or real)."""


def _clusters(count: int, kubeconfig: str | None) -> list[DemoCluster]:
    """One cluster: ``--kubeconfig`` or the default local server, named ``default`` as a
    single watcher's cluster is. More: named local servers side by side (CONTRACT §10)."""
    if kubeconfig:
        api: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        return [DemoCluster("default", kubeconfig, api)]
    if count == 1:
        servers = [("default", LocalKubeServer())]
    else:
        servers = [(n, LocalKubeServer(default_state_dir(n))) for n in CLUSTER_NAMES[:count]]
    clusters = []
    for name, server in servers:
        started = server.ensure_running()
        cluster = DemoCluster(name, str(server.kubeconfig), server.api_client())
        cluster.server = server if started else None
        clusters.append(cluster)
    return clusters


def _hint(entry: dict[str, Any]) -> str:
    """What a reader wants to see of a status at a glance."""
    status = entry.get("status", {}).get("status") or {}
    kind = entry["GVK"]["Kind"]
    if kind == "Pod":
        containers = status.get("containerStatuses") or [{}]
        waiting = (containers[0].get("state") or {}).get("waiting", {}).get("reason")
        restarts = containers[0].get("restartCount", 0)
        return f" [{waiting or status.get('phase', '?')}, restarts {restarts}]"
    if kind in ("Deployment", "ReplicaSet"):
        replicas = entry.get("status", {}).get("spec", {}).get("replicas")
        return f" [{status.get('readyReplicas', 0)}/{replicas} ready]"
    if kind == "ConfigMap":
        data = entry.get("status", {}).get("data") or {}
        return " [" + ", ".join(f"{k}={v}" for k, v in sorted(data.items())) + "]"
    return ""


def _names(entries: list[dict[str, Any]], with_status: bool = True) -> str:
    return ", ".join(
        f"{e['GVK']['Kind']}/{e['name']}@{e.get('cluster', '?')}{_hint(e) if with_status else ''}"
        for e in entries
    )


def describe_callback(callback: Request) -> str:
    """One readable line (plus names) for a callback, as the demo prints it."""
    payload = callback.payload
    changes = payload["resource-changes"]
    moment = datetime.fromtimestamp(callback.received_at).strftime("%H:%M:%S.%f")[:-3]
    head = (
        f"{moment}  {payload['instance-id']}/{payload['subscription-name']}  "
        f"created {len(changes['created'])}  modified {len(changes['modified'])}  "
        f"deleted {len(changes['deleted'])}"
    )
    lines = [head]
    for sign, kind in (("+", "created"), ("~", "modified"), ("-", "deleted")):
        if changes[kind]:
            lines.append(f"      {sign} {_names(changes[kind], with_status=kind != 'deleted')}")
    return "\n".join(lines)


class DemoInterrupted(Exception):
    pass


@contextmanager
def _interruptible() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()
        raise DemoInterrupted

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _summary(received: list[Request], interval_s: float) -> list[str]:
    totals = {"created": 0, "modified": 0, "deleted": 0}
    for callback in received:
        for kind in totals:
            totals[kind] += len(callback.payload["resource-changes"][kind])
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(received)]
    lines = [
        f"callbacks received: {len(received)}  "
        f"(created {totals['created']}, modified {totals['modified']}, "
        f"deleted {totals['deleted']})",
    ]
    if gaps:
        lines.append(
            f"closest two callbacks: {min(gaps):.2f}s apart (min-notify-interval {interval_s}s)"
        )
    return lines


def demo(
    kubeconfig: str | None = typer.Option(
        None, help="Watch this real cluster instead of the local API server."
    ),
    interval: int = typer.Option(INTERVAL_S, help="min-notify-interval of the demo subscription"),
    clusters: int = typer.Option(
        1,
        min=1,
        max=len(CLUSTER_NAMES),
        help="Play the story in this many local clusters (one API server and one watcher "
        "each, one differ and notifier); callbacks show each change's cluster.",
    ),
    step_pause: float = typer.Option(1.5, help="Seconds between story steps."),
    keep_servers: bool = typer.Option(
        False, help="Leave the broker and API server running afterwards."
    ),
    timeout: float = typer.Option(10.0, help="Seconds to reach Kafka."),
) -> None:
    """Run the whole pipeline locally and play a scripted story (no cluster, no Docker)."""
    say = typer.echo
    # First, before anything is started: a broker that cannot be reached is one line, no more.
    choice = pipeline_broker(timeout)
    started_broker, bootstrap = choice.started_here, choice.bootstrap
    playing: list[DemoCluster] = []
    workers: list[WorkerProcess] = []
    sink = CallbackSink(on_request=lambda c: say(describe_callback(c))).start()
    log_dir = Path(tempfile.mkdtemp(prefix="deltawatch-demo-"))
    broker = LocalKafkaBroker()
    with _interruptible():
        try:
            say(f"Kafka          {bootstrap}")
            playing = _clusters(clusters, kubeconfig)
            for cluster in playing:
                say(f"Kubernetes     {cluster.name}: {cluster.kubeconfig}")

            run_id = datetime.now().strftime("%H%M%S")
            namespace, instance_id = f"deltawatch-demo-{run_id}", f"demo-{run_id}"
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "DELTAWATCH_NAMESPACES": namespace,
                "DELTAWATCH_HEARTBEAT_S": "5",
            }
            workers = _start_workers(playing, namespace, env, log_dir)
            say(f"Worker logs    {log_dir}")
            wait_ready(workers)

            stories = [InstanceStory(c.api, namespace, instance_id) for c in playing]
            for story in stories:
                story.seed()
            say(f"Instance       {instance_id}: {', '.join(sorted(stories[0].objects))}")
            # What exists when the subscription starts: the last callbacks must delete it all.
            seeded = {
                (cluster.name, *key.split("/", 1))
                for cluster, story in zip(playing, stories, strict=True)
                for key in story.live_names()
            }

            settings = client_settings(choice)
            result = send_command(
                settings,
                {
                    "action": "create",
                    "instance-id": instance_id,
                    "subscription": {
                        "name": SUBSCRIPTION,
                        "callback-url": sink.url(),
                        "min-notify-interval": interval,
                        "metadata": {"owner": "demo"},
                    },
                },
            )
            say(f"Subscription   {SUBSCRIPTION} -> {result['status']}  (interval {interval}s)")
            if result["status"] != "accepted":
                raise RuntimeError(f"subscription rejected: {result.get('error')}")

            say("")
            for steps in zip(*(story.steps() for story in stories), strict=True):
                say(f"--- {steps[0][0]}")
                for _title, step in steps:
                    step()
                time.sleep(step_pause)  # pacing for the reader, not synchronisation

            try:
                sink.wait_for(
                    lambda received: everything_deleted(received, seeded),
                    timeout_s=60 + interval * 3,
                )
                done = True
            except SinkTimeout:
                done = False
            say("")
            for line in _summary(sink.requests, interval):
                say(line)
            if not done:
                say("the final deletions did not all arrive within the wait", err=True)
                raise typer.Exit(1)
        except DemoInterrupted:
            say("\ninterrupted; stopping", err=True)
        finally:
            stop_workers(workers)
            sink.stop()
            if not keep_servers:
                for cluster in playing:
                    if cluster.server is not None:
                        cluster.server.stop()
                if started_broker:
                    broker.stop()
            say("stopped", err=True)


def _start_workers(
    playing: list[DemoCluster], namespace: str, env: dict[str, str], log_dir: Path
) -> list[WorkerProcess]:
    """One watcher per cluster (its kubeconfig and name), one differ and one notifier."""
    workers = []
    for cluster in playing:
        ops.create_namespace(cluster.api, namespace)
        watcher_env = {**env, "KUBECONFIG": cluster.kubeconfig, "DELTAWATCH_CLUSTER": cluster.name}
        log = log_dir / ("watcher.log" if len(playing) == 1 else f"watcher-{cluster.name}.log")
        workers.append(start_worker("watcher", watcher_env, log_path=log))
    for name in WORKERS:
        if name != "watcher":
            workers.append(start_worker(name, env, log_path=log_dir / f"{name}.log"))
    return workers


def everything_deleted(received: list[Request], seeded: set[tuple[str, ...]]) -> bool:
    """True once the subscriber has been told that the instance has no objects left.

    ``seeded`` (cluster, kind, name) existed before the subscription: never told created, they
    must still be told deleted. (Without them the demo could stop before the last callback,
    which only deletes such objects — as CI once saw, with two clusters and no pause.) An
    object created and deleted between two callbacks is never told at all, rightly."""
    live: set[tuple[str, ...]] = set(seeded)
    for callback in received:
        changes = callback.payload["resource-changes"]
        for entry in changes["created"] + changes["modified"]:
            live.add((entry.get("cluster", ""), entry["GVK"]["Kind"], entry["name"]))
        for entry in changes["deleted"]:
            live.discard((entry.get("cluster", ""), entry["GVK"]["Kind"], entry["name"]))
    told_deleted = any(c.payload["resource-changes"]["deleted"] for c in received)
    return told_deleted and not live
