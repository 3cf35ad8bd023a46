"""Change → callback latency through the running pipeline, at several offered rates.

Run on demand: ``.venv/bin/python -m bench.e2e_latency [--duration 10] [--rates 100,1000]``.

It starts (or reuses) the local broker and API server, the three workers as subprocesses and
a callback sink, subscribes with interval 0, then patches labelled ConfigMaps at each offered
rate. Every patch carries its wall-clock send time in the data; the sink reads it back from
the callback, so latency is measured per change, end to end (API server → watcher → Kafka →
differ → Kafka → notifier → HTTP). A final "max" step offers as much as the driver threads
can send. Prints a table and writes ``bench/out/e2e_latency.png``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client import ApiClient

from deltawatch.command_client import send_command
from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink, Request
from deltawatch_tools.local_pipeline import WORKERS, start_worker, stop_workers, wait_ready
from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer

LABEL = "k8splugin.io/rb-instance-id"


@dataclass
class StepResult:
    offered: str
    sent: int
    received: int
    achieved_per_s: float
    p50_ms: float
    p99_ms: float


class LatencyRecorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}

    def on_callback(self, callback: Request) -> None:
        for entry in callback.payload["resource-changes"]["modified"]:
            data = entry["status"].get("data") or {}
            if "sent" in data and "step" in data:
                latency = callback.received_at - float(data["sent"])
                with self.lock:
                    self.samples.setdefault(data["step"], []).append(latency)

    def count(self, step: str) -> int:
        with self.lock:
            return len(self.samples.get(step, []))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drive(
    api: ApiClient,
    configmaps: list[dict[str, object]],
    step: str,
    rate: float | None,
    duration_s: float,
    threads: int,
) -> tuple[int, float]:
    """Patch ConfigMaps round-robin at ``rate``/s (None = as fast as possible)."""
    counter = itertools.count()
    deadline = time.monotonic() + duration_s
    start = time.monotonic()

    def worker(index: int) -> int:
        sent = 0
        own = configmaps[index::threads]
        for n in itertools.count():
            if time.monotonic() >= deadline:
                return sent
            if rate is not None:
                due = start + next(counter) / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if time.monotonic() >= deadline:
                    return sent
            target = own[n % len(own)]
            ops.patch(api, target, {"data": {"sent": f"{time.time():.6f}", "step": step}})
            sent += 1
        return sent

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(worker, range(threads)))
    return total, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    bootstrap = LocalKafkaBroker().start().bootstrap
    kube = LocalKubeServer()
    kube.ensure_running()
    api = kube.api_client()
    run = uuid.uuid4().hex[:6]
    namespace, instance = f"bench-{run}", f"bench-{run}"
    ops.create_namespace(api, namespace)
    topic_env = {
        "DELTAWATCH_COMMANDS_TOPIC": f"bench.commands.{run}",
        "DELTAWATCH_COMMAND_RESULTS_TOPIC": f"bench.results.{run}",
        "DELTAWATCH_SUBSCRIPTIONS_TOPIC": f"bench.subscriptions.{run}",
        "DELTAWATCH_RESOURCE_EVENTS_TOPIC": f"bench.events.{run}",
        "DELTAWATCH_DELTAS_TOPIC": f"bench.deltas.{run}",
        "DELTAWATCH_CPS_TOPIC": f"bench.cps.{run}",
        "DELTAWATCH_DLQ_TOPIC": f"bench.dlq.{run}",
    }
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KUBECONFIG": str(kube.kubeconfig),
        "DELTAWATCH_NAMESPACES": namespace,
        "DELTAWATCH_LOG_LEVEL": "WARNING",
        **topic_env,
    }
    recorder = LatencyRecorder()
    sink = CallbackSink(on_request=recorder.on_callback).start()
    out_dir = Path("bench/out")
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = [start_worker(n, env, log_path=out_dir / f"e2e-{n}.log") for n in WORKERS]
    results: list[StepResult] = []
    try:
        wait_ready(workers)
        configmaps = [
            ops.create(
                api,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": f"cm-{i}",
                        "namespace": namespace,
                        "labels": {LABEL: instance},
                    },
                    "data": {"sent": "0", "step": "seed"},
                },
            )
            for i in range(args.objects)
        ]
        settings = CommonSettings(**env)
        result = send_command(
            settings,
            {
                "action": "create",
                "instance-id": instance,
                "subscription": {
                    "name": "bench",
                    "callback-url": sink.url(),
                    "min-notify-interval": 0,
                },
            },
        )
        assert result["status"] == "accepted", result
        steps: list[tuple[str, float | None]] = [
            (f"{r}/s", float(r)) for r in args.rates.split(",") if r
        ] + [("max", None)]
        for label, rate in steps:
            sent, elapsed = drive(api, configmaps, label, rate, args.duration, args.threads)
            deadline = time.monotonic() + 60
            while recorder.count(label) < sent and time.monotonic() < deadline:
                time.sleep(0.2)
            samples = recorder.samples.get(label, [])
            results.append(
                StepResult(
                    label,
                    sent,
                    len(samples),
                    sent / elapsed,
                    statistics.median(samples) * 1000 if samples else float("nan"),
                    _percentile(samples, 0.99) * 1000 if samples else float("nan"),
                )
            )
    finally:
        stop_workers(workers)
        sink.stop()

    header = ("offered", "sent", "received", "achieved/s", "p50 ms", "p99 ms")
    print("{:>10} {:>7} {:>9} {:>11} {:>8} {:>8}".format(*header))
    for r in results:
        print(
            f"{r.offered:>10} {r.sent:>7} {r.received:>9} {r.achieved_per_s:>11.1f} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f}"
        )
    _plot(results, out_dir / "e2e_latency.png")


def _plot(results: list[StepResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r.achieved_per_s for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, [r.p50_ms for r in results], marker="o", label="p50")
    ax.plot(rates, [r.p99_ms for r in results], marker="o", label="p99")
    for r in results:
        ax.annotate(r.offered, (r.achieved_per_s, r.p99_ms))
    ax.set_xlabel("changes/s (achieved)")
    ax.set_ylabel("change → callback latency (ms)")
    ax.set_title("deltawatch end-to-end latency (interval 0)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
