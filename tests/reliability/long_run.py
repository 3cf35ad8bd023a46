"""The long reliability run, on demand: every fault scenario over thousands of changes.

    .venv/bin/python -m tests.reliability.long_run [--changes 2000] [--rounds 8]
        [--scenario sigkill --scenario broker ...] [--seed N]

Why a script and not a pytest test: it runs for many minutes and prints a table (rounds,
faults injected, changes, callbacks, losses — must be 0 —, duplicates by webhook-id); CI
runs the same scenarios, short, through ``tests/reliability/test_*.py``. It starts what it
needs itself: the shared local broker (or ``KAFKA_BOOTSTRAP_SERVERS``), a broker of its own
for the broker outages, a kube-apiserver of its own (watch cache off), and for ``clusters``
a second one ("west"; the first is "east"), each watched by a watcher of its own. Each scenario
prints its seed; ``--seed`` (or ``DELTAWATCH_RELIABILITY_SEED``) replays it.
Exit status 1 when any scenario found a problem.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import typer
from kubernetes.client import ApiClient

from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from deltawatch_tools.localkube import LocalKubeServer, ops
from tests.fixtures.kafka import unique_topic_env
from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import RELIABILITY_KUBE
from tests.reliability.pipeline_run import (
    HEADER,
    PipelineRun,
    Report,
    default_subscriptions,
    run_seed,
)
from tests.reliability.scenarios import (
    CLUSTERS_PARTITIONS,
    CLUSTERS_REPLICAS,
    PAIR_REPLICAS,
    broker_outages,
    cluster_rounds,
    clusters_worker_env,
    kube_faults,
    pair_rounds,
    pair_worker_env,
    replica_loss,
    sigkill_rounds,
    sigterm_rounds,
    sink_faults,
)

SCENARIOS = ("sigkill", "sigterm", "sink", "kube", "broker", "replicas", "clusters", "pair")
INSTANCES = ["rel0", "rel1", "rel2", "rel3"]


def main(
    changes: int = typer.Option(2000, help="Cluster changes per scenario."),
    rounds: int = typer.Option(8, help="Faults per scenario."),
    scenario: list[str] = typer.Option(list(SCENARIOS), help="Scenarios to run (repeatable)."),
    seed: int | None = typer.Option(None, help="Replay this seed (every scenario)."),
    pace: float = typer.Option(0.03, help="Seconds between changes (on top of the API call)."),
) -> None:
    unknown = set(scenario) - set(SCENARIOS)
    if unknown:
        raise typer.BadParameter(f"unknown scenarios {sorted(unknown)}; known: {SCENARIOS}")
    work = Path(tempfile.mkdtemp(prefix="deltawatch-reliability-"))
    print(f"[reliability] logs under {work}", flush=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or LocalKafkaBroker().start().bootstrap
    kube = LocalKubeServer(work / "kube", progress=None)
    kube.ensure_running(RELIABILITY_KUBE)
    own_broker: LocalKafkaBroker | None = None
    west: LocalKubeServer | None = None
    reports: list[Report] = []
    try:
        for index, name in enumerate(scenario):
            if name == "clusters" and west is None:
                west = LocalKubeServer(work / "kube-west", progress=None)
                west.ensure_running(RELIABILITY_KUBE)
            if name == "broker" and own_broker is None:
                own_broker = LocalKafkaBroker(run=work / "kafka")
                own_broker.start()
            scenario_bootstrap = bootstrap
            if name == "broker" and own_broker is not None:
                state = own_broker.status()
                assert state is not None
                scenario_bootstrap = state.bootstrap
            reports.append(
                _one(
                    name,
                    index,
                    work,
                    kube,
                    west,
                    scenario_bootstrap,
                    own_broker,
                    changes,
                    rounds,
                    seed,
                    pace,
                )
            )
            print(HEADER)
            print(reports[-1].row(), flush=True)
    finally:
        if own_broker is not None:
            own_broker.stop()
        if west is not None:
            west.stop()
        kube.stop()
    _table(reports, rounds)
    if any(r.verdict.problems or _real_crashes(r) for r in reports):
        for report in reports:
            for problem in report.verdict.problems[:20]:
                print(f"  {report.scenario}: {problem}")
            for crash in _real_crashes(report):
                print(f"  {report.scenario}: crash {crash}")
        sys.exit(1)


def _real_crashes(report: Report) -> list[str]:
    # the Kafka-call deadline exit (librdkafka #5456) is a deliberate restart, not a crash
    allowed = report.scenario == "broker"
    return [c for c in report.crashes if not (allowed and c.endswith("exited 1"))]


WorkerEnv = dict[tuple[str, int], dict[str, str]]


def _layout(
    name: str, namespace: str, kube: LocalKubeServer, west: LocalKubeServer | None
) -> tuple[dict[str, int] | None, WorkerEnv | None]:
    """The replicas of scenario ``name`` and the settings of single replicas (None: one of
    each worker, all alike)."""
    if name == "replicas":
        return {"watcher": 1, "differ": 2, "notifier": 2}, None
    if name == "pair":
        return PAIR_REPLICAS, pair_worker_env(namespace)
    if name == "clusters":
        assert west is not None
        return CLUSTERS_REPLICAS, clusters_worker_env([kube.kubeconfig, west.kubeconfig])
    return None, None


def _one(
    name: str,
    index: int,
    work: Path,
    kube: LocalKubeServer,
    west: LocalKubeServer | None,
    bootstrap: str,
    own_broker: LocalKafkaBroker | None,
    changes: int,
    rounds: int,
    seed: int | None,
    pace: float,
) -> Report:
    the_seed = run_seed(seed)
    namespace = f"long-{index}-{name}"
    api = kube.api_client()
    ops.create_namespace(api, namespace)
    logs = work / namespace
    logs.mkdir()
    env = {
        **unique_topic_env(bootstrap, f"long-{name}"),
        "KUBECONFIG": str(kube.kubeconfig),
        "DELTAWATCH_NAMESPACES": namespace,
    }
    replicas, worker_env = _layout(name, namespace, kube, west)
    west_api = None
    if name == "clusters":
        assert west is not None
        west_api = west.api_client()
        ops.create_namespace(west_api, namespace)  # the same namespace/names in both
        env["DELTAWATCH_PARTITIONS"] = CLUSTERS_PARTITIONS
    run = PipelineRun(env, logs, replicas, worker_env)
    began = time.monotonic()
    try:
        run.start_all()
        for subscription in default_subscriptions(INSTANCES):
            run.subscribe(subscription)
        scripts = _scripts(
            run, api, west_api, namespace, the_seed, kube, own_broker, changes, rounds, pace
        )
        report = scripts[name]()
    finally:
        run.stop_all()
        api.close()  # type: ignore[no-untyped-call]
        if west_api is not None:
            west_api.close()  # type: ignore[no-untyped-call]
    print(f"[reliability] {name}: {time.monotonic() - began:.0f}s", flush=True)
    return report


def _scripts(
    run: PipelineRun,
    api: ApiClient,
    west_api: ApiClient | None,
    namespace: str,
    the_seed: int,
    kube: LocalKubeServer,
    own_broker: LocalKafkaBroker | None,
    changes: int,
    rounds: int,
    pace: float,
) -> dict[str, Callable[[], Report]]:
    """Every scenario this run can play, by name, on its drivers and seeded ``Random``."""
    driver = ClusterDriver(api, namespace, INSTANCES, the_seed)
    rng = random.Random(the_seed)
    scripts: dict[str, Callable[[], Report]] = {
        "sigkill": lambda: sigkill_rounds(run, driver, rng, changes, rounds, pace),
        "sigterm": lambda: sigterm_rounds(run, driver, rng, changes, rounds, pace),
        "sink": lambda: sink_faults(run, driver, rng, changes, rounds, pace),
        "kube": lambda: kube_faults(run, driver, rng, changes, rounds, kube, pace),
        "replicas": lambda: replica_loss(run, driver, rng, changes, rounds, pace),
        "pair": lambda: pair_rounds(run, driver, rng, changes, rounds, pace),
    }
    if west_api is not None:
        drivers = [
            ClusterDriver(api, namespace, INSTANCES, the_seed, cluster="east"),
            ClusterDriver(west_api, namespace, INSTANCES, the_seed + 1, cluster="west"),
        ]
        # --changes is the total, as in the other scenarios: half in each cluster
        scripts["clusters"] = lambda: cluster_rounds(run, drivers, rng, changes // 2, rounds, pace)
    if own_broker is not None:
        broker = own_broker
        scripts["broker"] = lambda: broker_outages(run, driver, rng, changes, rounds, broker, pace)
    return scripts


def _table(reports: list[Report], rounds: int) -> None:
    print()
    print(f"rounds per scenario: {rounds}")
    print(HEADER)
    for report in reports:
        print(report.row())
    total_losses = sum(r.losses for r in reports)
    total_dups = sum(r.verdict.duplicates for r in reports)
    print(f"losses: {total_losses}   duplicates by webhook-id: {total_dups}")


if __name__ == "__main__":
    typer.run(main)
