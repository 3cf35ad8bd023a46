"""Time from SIGKILL of a worker to the first change made during its outage reaching the subscriber.

Run on demand: ``.venv/bin/python -m bench.recovery [--rounds 10] [--workers differ,notifier]``.

It starts (or reuses) the local broker and API server, the three workers as subprocesses and a
callback sink, and subscribes with interval 0. Each round, for each worker in turn: SIGKILL it,
change a labelled ConfigMap while it is down, start it again with the same environment (so the
same member and transactional ids, as a restarted pod would have) and record

* **kill→ready**: until the new process answers ``/readyz`` 200;
* **ready→delivered**: from then until the sink receives the change made during the outage;
* **kill→delivered**: the whole blackout an operator sees.

A ``differ+watcher`` target kills both (a node loss takes both when they share it). Prints
p50 / max per worker and column.

Figures on this 2-core machine (load ~4-6, other work running), kill→delivered p50 / max:

* before (static membership only in the notifier, 45 s session timeout, a 0.5 s consume wait
  per restore read), 2 rounds: differ 48.5 / 49.2 s, notifier 3.7 / 3.9 s, watcher 2.5 / 2.8 s,
  differ+watcher 47.7 / 47.9 s;
* after (claimed static member ids, then 10 s sessions, since reverted to 45 s: they do not
  change these figures; one restore read with short fetch waits),
  10 rounds: differ 2.14 / 3.61 s, notifier 2.29 / 3.00 s, watcher 1.34 / 2.23 s,
  differ+watcher 2.63 / 3.15 s; ready→delivered at most 0.19 s.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from deltawatch.command_client import send_command
from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink, Request
from deltawatch_tools.local_pipeline import (
    WORKERS,
    WorkerProcess,
    start_worker,
    stop_workers,
    wait_ready,
)
from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer

LABEL = "k8splugin.io/rb-instance-id"
COLUMNS = ("kill→ready", "ready→delivered", "kill→delivered")


@dataclass
class MarkerWatch:
    """The sink's view: when each marker value was first received."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: dict[str, float] = field(default_factory=dict)

    def on_callback(self, callback: Request) -> None:
        changes = callback.payload["resource-changes"]
        for entry in [*changes["created"], *changes["modified"]]:
            marker = (entry["status"].get("data") or {}).get("marker")
            if marker:
                with self.lock:
                    self.seen.setdefault(marker, time.monotonic())

    def wait(self, marker: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if marker in self.seen:
                    return self.seen[marker]
            time.sleep(0.01)
        raise TimeoutError(f"marker {marker} not delivered within {timeout_s:g}s")


def _wait_ready(worker: WorkerProcess, timeout_s: float = 120.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"{worker.name} exited with {worker.process.returncode}")
        if worker.ready():
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"{worker.name} not ready within {timeout_s:g}s")


def _one_round(
    target: str,
    workers: dict[str, WorkerProcess],
    api: ApiClient,
    configmap: dict[str, Any],
    markers: MarkerWatch,
    log_dir: Path,
) -> tuple[float, float, float]:
    names = target.split("+")
    killed_at = time.monotonic()
    for name in names:
        workers[name].process.send_signal(signal.SIGKILL)
    for name in names:
        workers[name].process.wait()
    marker = uuid.uuid4().hex[:10]
    ops.patch(api, configmap, {"data": {"marker": marker}})
    for name in names:
        old = workers[name]
        workers[name] = start_worker(name, old.env, old.port, log_dir / f"recovery-{name}.log")
    ready_at = max(_wait_ready(workers[name]) for name in names)
    delivered_at = markers.wait(marker, 180.0)
    return ready_at - killed_at, delivered_at - ready_at, delivered_at - killed_at


def _print(results: dict[str, list[tuple[float, float, float]]]) -> None:
    print(f"{'killed':<16}{'rounds':>7}" + "".join(f"{c + ' p50/max s':>28}" for c in COLUMNS))
    for target, rows in results.items():
        cells = []
        for column in range(len(COLUMNS)):
            values = [row[column] for row in rows]
            cells.append(f"{statistics.median(values):>10.2f} / {max(values):>6.2f}")
        print(f"{target:<16}{len(rows):>7}" + "".join(f"{c:>28}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workers", default="differ,notifier,watcher,differ+watcher")
    args = parser.parse_args()

    bootstrap = LocalKafkaBroker().start().bootstrap
    kube = LocalKubeServer()
    kube.ensure_running()
    api = kube.api_client()
    run = uuid.uuid4().hex[:6]
    namespace, instance = f"recovery-{run}", f"recovery-{run}"
    ops.create_namespace(api, namespace)
    # Any, not str: CommonSettings(**env) below has keyword parameters of many types, and
    # pydantic, not mypy, validates these values there.
    env: dict[str, Any] = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KUBECONFIG": str(kube.kubeconfig),
        "DELTAWATCH_NAMESPACES": namespace,
        "DELTAWATCH_LOG_LEVEL": "INFO",
        "DELTAWATCH_RESOURCE_TYPES": "v1/ConfigMap",
        # Groups of its own: a default group shared with another pipeline on this broker
        # would rebalance with it (and, before ids were claimed, fence it).
        "DELTAWATCH_DIFFER_GROUP_ID": f"recovery-differ-{run}",
        "DELTAWATCH_NOTIFIER_GROUP_ID": f"recovery-notifier-{run}",
        **{
            variable: f"recovery.{topic}.{run}"
            for variable, topic in (
                ("DELTAWATCH_COMMANDS_TOPIC", "commands"),
                ("DELTAWATCH_COMMAND_RESULTS_TOPIC", "results"),
                ("DELTAWATCH_SUBSCRIPTIONS_TOPIC", "subscriptions"),
                ("DELTAWATCH_RESOURCE_EVENTS_TOPIC", "events"),
                ("DELTAWATCH_DELTAS_TOPIC", "deltas"),
                ("DELTAWATCH_CPS_TOPIC", "cps"),
                ("DELTAWATCH_DLQ_TOPIC", "dlq"),
            )
        },
    }
    markers = MarkerWatch()
    sink = CallbackSink(on_request=markers.on_callback).start()
    log_dir = Path("bench/out")
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = {n: start_worker(n, env, log_path=log_dir / f"recovery-{n}.log") for n in WORKERS}
    results: dict[str, list[tuple[float, float, float]]] = {}
    try:
        wait_ready(list(workers.values()))
        configmap = ops.create(
            api,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "recovery",
                    "namespace": namespace,
                    "labels": {LABEL: instance},
                },
                "data": {"marker": ""},
            },
        )
        subscription = {"name": "recovery", "callback-url": sink.url(), "min-notify-interval": 0}
        result = send_command(
            CommonSettings(**env),
            {"action": "create", "instance-id": instance, "subscription": subscription},
        )
        assert result["status"] == "accepted", result
        warm = uuid.uuid4().hex[:10]
        ops.patch(api, configmap, {"data": {"marker": warm}})
        markers.wait(warm, 60.0)
        for round_number in range(args.rounds):
            for target in args.workers.split(","):
                row = _one_round(target, workers, api, configmap, markers, log_dir)
                results.setdefault(target, []).append(row)
                print(f"round {round_number + 1} {target}: " + ", ".join(f"{v:.2f}" for v in row))
    finally:
        stop_workers(list(workers.values()))
        sink.stop()
    _print(results)


if __name__ == "__main__":
    main()
