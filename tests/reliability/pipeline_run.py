"""One fault-injection run: the three workers as real processes, a seeded change stream, a
fault script, and the oracle's verdict at the end.

Why a plain class and not pytest fixtures: the same run serves the short seeded CI tests and
the long on-demand run (``long_run.py``), which has no pytest around it. Workers are started
exactly as in production (``python -m services.<worker>``); a supervisor loop restarts any
that exited, as Kubernetes would, and records exits nobody asked for as crashes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Message
from prometheus_client.parser import text_string_to_metric_families

from deltawatch.cloud_events import DELTA_TYPE, CloudEventDecodeError, from_kafka
from deltawatch.command_client import send_command
from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink
from deltawatch_tools.local_pipeline import WorkerProcess, start_worker, wait_ready
from deltawatch_tools.localkube import ops
from tests.fixtures.kafka import committed_records
from tests.reliability.cluster_driver import COMPARED_FIELDS, ClusterDriver
from tests.reliability.oracle import (
    History,
    Obj,
    ObjectKey,
    Receipt,
    Verdict,
    check_subscription,
    sequence_violations,
)

SEED_VARIABLE = "DELTAWATCH_RELIABILITY_SEED"
# A killed consumer's partitions wait for its session to expire: keep that short in tests.
FAST_GROUPS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def run_seed(default: int | None = None) -> int:
    """The seed of this run: ``DELTAWATCH_RELIABILITY_SEED`` to replay, else a fresh one."""
    text = os.environ.get(SEED_VARIABLE)
    seed = int(text) if text else (default if default is not None else random.randrange(10**6))
    print(f"[reliability] seed {seed} (replay with {SEED_VARIABLE}={seed})", flush=True)
    return seed


@dataclass(frozen=True)
class Subscription:
    instance: str
    name: str
    interval: int

    @property
    def path(self) -> str:
        return f"{self.instance}.{self.name}"


@dataclass
class Report:
    scenario: str
    seed: int
    faults: int = 0
    changes: int = 0
    callbacks: int = 0
    verdict: Verdict = field(default_factory=Verdict)
    crashes: list[str] = field(default_factory=list)

    @property
    def losses(self) -> int:
        """Objects a subscriber was left wrong about (missing, stale or outdated)."""
        kinds = ("lost: ", "stale: ", "wrong: ")
        return sum(1 for p in self.verdict.problems if any(k in p for k in kinds))

    @property
    def spurious(self) -> int:
        """Callback entries telling a change the named cluster never made."""
        return sum(1 for p in self.verdict.problems if "spurious: " in p)

    def row(self) -> str:
        return (
            f"{self.scenario:<22} {self.seed:>7} {self.faults:>6} {self.changes:>7} "
            f"{self.callbacks:>9} {self.losses:>6} {self.spurious:>8} "
            f"{self.verdict.duplicates:>10} {len(self.verdict.problems):>8} "
            f"{len(self.crashes):>7}"
        )


HEADER = (
    f"{'scenario':<22} {'seed':>7} {'faults':>6} {'changes':>7} {'callbacks':>9} "
    f"{'losses':>6} {'spurious':>8} {'duplicates':>10} {'problems':>8} {'crashes':>7}"
)


class PipelineRun:
    """Workers (with replicas), subscriptions on a recording sink, and the checks."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        replicas: dict[str, int] | None = None,
        worker_env: dict[tuple[str, int], dict[str, str]] | None = None,
    ) -> None:
        """``worker_env``: settings of one worker replica on top of ``env``, e.g. each
        watcher's ``KUBECONFIG`` and ``DELTAWATCH_CLUSTER`` when watching several clusters."""
        self.env = {
            "DELTAWATCH_HEARTBEAT_S": "2",
            "DELTAWATCH_CALLBACK_TIMEOUT_S": "2",
            "DELTAWATCH_DELIVERY_MAX_AGE_S": "600",
            "DELTAWATCH_DELIVERY_MAX_ATTEMPTS": "1000",
            "DELTAWATCH_DIFFER_DLQ_TOPIC": env["DELTAWATCH_DLQ_TOPIC"] + ".differ",
            "DELTAWATCH_KAFKA_CONFIG": json.dumps(FAST_GROUPS),
            **env,
        }
        self.settings = CommonSettings.model_validate(self.env)
        self.logs = logs
        self.replicas = replicas or {"watcher": 1, "differ": 1, "notifier": 1}
        self.worker_env = worker_env or {}
        self.workers: dict[tuple[str, int], WorkerProcess] = {}
        self.expected_exits: set[tuple[str, int]] = set()
        self.crashes: list[str] = []
        self.sink = CallbackSink().start()
        self.subscriptions: list[Subscription] = []

    # -- workers --------------------------------------------------------------------------
    def start(self, name: str, index: int = 0) -> WorkerProcess:
        running = self.workers.get((name, index))
        assert running is None or running.process.poll() is not None, f"{name}-{index} runs"
        env = {**self.env, **self.worker_env.get((name, index), {})}
        if name != "watcher":
            env["DELTAWATCH_TRANSACTIONAL_ID"] = f"{self.settings.application_id}-{name}-{index}"
        worker = start_worker(name, env, log_path=self.logs / f"{name}-{index}.log")
        self.workers[(name, index)] = worker
        self.expected_exits.discard((name, index))
        return worker

    def start_all(self, timeout_s: float = 120.0) -> None:
        for name, count in self.replicas.items():
            for index in range(count):
                self.start(name, index)
        wait_ready(list(self.workers.values()), timeout_s=timeout_s)

    def signal(self, name: str, index: int, signum: int) -> None:
        """Send ``signum``; the supervisor does not count the exit as a crash."""
        worker = self.workers[(name, index)]
        self.expected_exits.add((name, index))
        if worker.process.poll() is None:
            worker.process.send_signal(signum)

    def stop_gracefully(self, name: str, index: int = 0, limit_s: float = 10.0) -> float:
        """SIGTERM and wait; the worker must exit 0 within ``limit_s`` (CONTRACT §1)."""
        worker = self.workers[(name, index)]
        began = time.monotonic()
        self.signal(name, index, signal.SIGTERM)
        try:
            code = worker.process.wait(limit_s)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
            raise AssertionError(
                f"{name}-{index} did not exit within {limit_s}s of SIGTERM"
            ) from None
        assert code == 0, f"{name}-{index} exited {code} after SIGTERM"
        return time.monotonic() - began

    def kill(self, name: str, index: int = 0) -> None:
        worker = self.workers[(name, index)]
        self.signal(name, index, signal.SIGKILL)
        worker.process.wait()

    def supervise(self) -> None:
        """Restart every worker that is gone; an exit nobody asked for is a crash."""
        for (name, index), worker in list(self.workers.items()):
            code = worker.process.poll()
            if code is None:
                continue
            if (name, index) in self.expected_exits:
                continue  # stopped on purpose: the fault script restarts it
            self.crashes.append(f"{name}-{index} exited {code}")
            self.start(name, index)

    def stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                # a worker paused by a fault (SIGSTOP) would only act on SIGTERM once resumed
                worker.process.send_signal(signal.SIGCONT)
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers.values():
            try:
                worker.process.wait(12)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.sink.stop()

    def metric(self, name: str, index: int, sample: str, **labels: str) -> float:
        """Sum of ``sample``'s values (with these labels) on the worker's /metrics now."""
        text = httpx.get(f"http://127.0.0.1:{self.workers[(name, index)].port}/metrics").text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for found in family.samples:
                if found.name == sample and labels.items() <= found.labels.items():
                    total += found.value
        return total

    def log_tails(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"----- {path.name} -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def dump(self, drivers: Sequence[ClusterDriver]) -> None:
        """For a post-mortem, beside the worker logs: every POST the sink recorded
        (``callbacks.jsonl``) and every change each driver made (``changes-<cluster>.jsonl``)."""
        with (self.logs / "callbacks.jsonl").open("w") as out:
            for request in self.sink.requests:
                out.write(json.dumps(request.as_json()) + "\n")
        for driver in drivers:
            with (self.logs / f"changes-{driver.cluster}.jsonl").open("w") as out:
                for change in driver.log:
                    out.write(json.dumps(change) + "\n")

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, subscription: Subscription) -> None:
        result = send_command(
            self.settings,
            {
                "action": "create",
                "instance-id": subscription.instance,
                "subscription": {
                    "name": subscription.name,
                    "callback-url": self.sink.url(subscription.path),
                    "min-notify-interval": subscription.interval,
                    "metadata": {"run": "reliability"},
                },
            },
            timeout_s=60,
        )
        assert result["status"] == "accepted", result
        self.subscriptions.append(subscription)

    # -- the checks -----------------------------------------------------------------------
    def receipts(self, path: str) -> list[Receipt]:
        """Every POST the sink recorded for one subscription, as the oracle reads them."""
        return [
            Receipt(r.headers.get("webhook-id", ""), r.received_at, r.body, r.answered)
            for r in self.sink.requests_to(path)
        ]

    def verdicts(
        self, truth: dict[str, dict[ObjectKey, Obj]], history: History | None = None
    ) -> dict[Subscription, Verdict]:
        return {
            s: check_subscription(
                self.receipts(s.path),
                {},
                truth[s.instance],
                interval_s=s.interval,
                fields=COMPARED_FIELDS,
                history=history,
            )
            for s in self.subscriptions
        }

    def converge(
        self, drivers: ClusterDriver | Sequence[ClusterDriver], timeout_s: float = 120.0
    ) -> dict[Subscription, Verdict]:
        """Wait (bounded) until every subscriber's reconstructed state is the truth (of
        every cluster: one driver per cluster) and nothing spurious was told."""
        drivers = _as_list(drivers)
        truth: dict[str, dict[ObjectKey, Obj]] = {}
        history = History()
        for driver in drivers:
            history = history.merge(driver.history)
            for instance in driver.instances:
                truth.setdefault(instance, {}).update(driver.truth(instance))

        def settled() -> dict[Subscription, Verdict] | None:
            self.supervise()
            verdicts = self.verdicts(truth, history)
            return verdicts if all(v.ok for v in verdicts.values()) else None

        try:
            return ops.wait_until(settled, timeout=timeout_s, interval=0.5, what="convergence")
        except TimeoutError:
            return self.verdicts(truth, history)

    def read_topic(self, topic: str, timeout_s: float = 30.0) -> list[Message]:
        """Every committed record of ``topic``, read to the end offsets found at the start."""
        return committed_records(self.settings, topic, timeout_s)

    def delta_sequences(self) -> list[tuple[str, int]]:
        """(instance, sequence) of every committed delta event, in topic order."""
        found: list[tuple[str, int]] = []
        for message in self.read_topic(self.settings.deltas_topic):
            try:
                headers: Any = message.headers() or []
                event = from_kafka(message.key(), message.value(), headers)
            except CloudEventDecodeError:
                continue
            if event.get_type() == DELTA_TYPE:
                data: Any = event.get_data()
                found.append((str(data["instance-id"]), int(data["sequence"])))
        return found


def _as_list(drivers: ClusterDriver | Sequence[ClusterDriver]) -> list[ClusterDriver]:
    return [drivers] if isinstance(drivers, ClusterDriver) else list(drivers)


def drive_clusters(
    run: PipelineRun,
    drivers: Sequence[ClusterDriver],
    changes: int,
    faults: dict[int, Callable[[], None]],
    pace_s: float = 0.0,
) -> int:
    """Change every cluster at once: ``drivers[0]`` here, with the faults and the
    supervisor (as :func:`drive`), each other one in a thread of its own making ``changes``
    changes at the same pace. Returns the faults made."""
    errors: list[BaseException] = []

    def other(driver: ClusterDriver) -> None:
        try:
            for _ in range(changes):
                driver.step()
                if pace_s:
                    time.sleep(pace_s)  # the same pace as the first cluster, not a sync
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=other, args=(d,), name=f"drive-{d.cluster}", daemon=True)
        for d in drivers[1:]
    ]
    for thread in threads:
        thread.start()
    try:
        made = drive(run, drivers[0], changes, faults, pace_s)
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return made


def drive(
    run: PipelineRun,
    driver: ClusterDriver,
    changes: int,
    faults: dict[int, Callable[[], None]],
    pace_s: float = 0.0,
) -> int:
    """Make ``changes`` changes; before change ``i`` inject ``faults[i]``. Returns faults made."""
    made = 0
    for i in range(changes):
        fault = faults.get(i)
        if fault is not None:
            fault()
            made += 1
        driver.step()
        if i % 20 == 0:
            run.supervise()
        if pace_s:
            time.sleep(pace_s)  # spreads the changes over the faults' time, not a sync
    return made


def finish(
    run: PipelineRun, drivers: ClusterDriver | Sequence[ClusterDriver], report: Report
) -> Report:
    """Converge, then judge: subscriber states, spurious changes, duplicates, throttle,
    delta sequences. ``drivers``: one per cluster."""
    verdicts = run.converge(drivers)
    verdict = Verdict()
    for subscription, found in verdicts.items():
        found.problems = [f"{subscription.path}: {p}" for p in found.problems]
        verdict = verdict.merge(found)
    verdict.problems += sequence_violations(run.delta_sequences())
    run.dump(_as_list(drivers))
    report.verdict = verdict
    report.changes = sum(d.changes for d in _as_list(drivers))
    report.callbacks = len(run.sink.requests)
    report.crashes = list(run.crashes)
    return report


def default_subscriptions(instances: list[str]) -> list[Subscription]:
    intervals = [0, 1, 2, 0]
    subs = [Subscription(inst, "s", intervals[i % 3]) for i, inst in enumerate(instances)]
    subs.append(Subscription(instances[0], "t", 1))
    return subs
