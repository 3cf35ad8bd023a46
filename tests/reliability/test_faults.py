"""Every fault script run against the whole pipeline: nothing lost, nothing repeated except under
the same webhook-id, delta sequences without gap or repeat, never closer than the interval.

One parametrized test, because every fault is checked the same way (:func:`tests.reliability.
pipeline_run.finish` and its oracle); a case says only what differs: which fault script
(:mod:`tests.reliability.scenarios`), its size, the replicas, and what else must hold for the
fault to have bitten (e.g. the sink really answered 500, a watch really got 410 Gone).

The broker-outage case stops and kills a broker of its own (own run dir and ports, the cached
jars), so it disturbs no other test of the session.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from tests.reliability import scenarios
from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.oracle import Receipt, delivered_in_order, entry_key
from tests.reliability.pipeline_run import PipelineRun, Report, default_subscriptions, run_seed

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2"]

Script = Callable[[PipelineRun, ClusterDriver, random.Random, pytest.FixtureRequest], Report]
Check = Callable[[PipelineRun, Report], None]


@dataclass(frozen=True)
class FaultCase:
    script: Script
    instances: list[str] = field(default_factory=lambda: INSTANCES)
    replicas: dict[str, int] | None = None
    own_broker: bool = False
    check: Check = lambda run, report: None
    allowed_exits: tuple[str, ...] = ()
    """Worker exits that are recovery, not crashes (the harness restarts them)."""
    worker_env: Callable[[Cluster], dict[tuple[str, int], dict[str, str]]] | None = None
    """Settings of single worker replicas, from the test's cluster (e.g. its namespace)."""
    differ_state: bool = False
    """The differ keeps local state (``DELTAWATCH_DIFFER_STATE_DIR``) in the test's tmp_path."""


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(run=tmp_path_factory.mktemp("kafka-run"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _sink_answered_every_fault(run: PipelineRun, report: Report) -> None:
    served = run.sink.served
    for mode in ("500", "429", "hang"):
        assert served[mode], f"the sink never answered {mode}: {served}"


def _a_watch_got_410(run: PipelineRun, report: Report) -> None:
    relists = run.metric("watcher", 0, "deltawatch_watcher_relists_total", reason="expired")
    assert relists > 0, "no watch was ever refused with 410: the faults did not bite"


def _one_of_each_replica_survived(run: PipelineRun, report: Report) -> None:
    alive = [key for key, w in run.workers.items() if w.process.poll() is None]
    assert len(alive) == 3, f"one differ and one notifier should survive: {alive}"


def _the_differ_restored_from_local_state(run: PipelineRun, report: Report) -> None:
    restored = run.metric("differ", 0, "deltawatch_differ_restores_total", source="local")
    assert restored > 0, "the restarted differ did not restore from its local state"


def _one_leader_one_standby(run: PipelineRun, report: Report) -> None:
    scenarios.pair_leader(run, timeout_s=30)
    leading = sum(run.metric("watcher", i, "deltawatch_watcher_leader") for i in range(2))
    assert leading == 1, f"{leading} watchers report deltawatch_watcher_leader 1"


CASES = {
    # The differ with local state: its SIGKILLed restart restores from disk (the WAL kept the
    # last committed batch); SIGTERM (next case) and the other faults restore from the changelog.
    "sigkill-of-random-workers": FaultCase(
        lambda run, driver, rng, _: scenarios.sigkill_rounds(run, driver, rng, 300, rounds=4),
        differ_state=True,
        check=_the_differ_restored_from_local_state,
    ),
    "sigterm-of-each-worker-is-graceful": FaultCase(
        lambda run, driver, rng, _: scenarios.sigterm_rounds(run, driver, rng, 200, rounds=3)
    ),
    "sink-down-500-429-hanging": FaultCase(
        lambda run, driver, rng, _: scenarios.sink_faults(run, driver, rng, 300, rounds=4),
        check=_sink_answered_every_fault,
    ),
    # the suite's API server runs with the watch cache off (conftest): a watch from a compacted
    # revision goes to etcd and gets 410 Gone
    "apiserver-restarts-and-410s": FaultCase(
        lambda run, driver, rng, request: scenarios.kube_faults(
            run, driver, rng, 200, rounds=2, server=request.getfixturevalue("cluster").server
        ),
        check=_a_watch_got_410,
    ),
    "broker-killed-and-stopped": FaultCase(
        lambda run, driver, rng, request: scenarios.broker_outages(
            run, driver, rng, 200, rounds=2, broker=request.getfixturevalue("own_broker")
        ),
        own_broker=True,
        # A worker may give up on a Kafka call that hangs past its deadline (librdkafka
        # #5456) and exit 1 to be restarted, as Kubernetes would; any other exit is a crash.
        allowed_exits=("exited 1",),
    ),
    "losing-a-differ-and-a-notifier-replica": FaultCase(
        lambda run, driver, rng, _: scenarios.replica_loss(run, driver, rng, 200, rounds=1),
        instances=["rel0", "rel1", "rel2", "rel3"],
        replicas={"watcher": 1, "differ": 2, "notifier": 2},
        check=_one_of_each_replica_survived,
    ),
    # issue 19: SIGKILL, SIGTERM and SIGSTOP (past the lease) of the leader of a watcher pair
    "watcher-pair-leader-killed-terminated-paused": FaultCase(
        lambda run, driver, rng, _: scenarios.pair_rounds(run, driver, rng, 240, rounds=3),
        replicas=scenarios.PAIR_REPLICAS,
        worker_env=lambda cluster: scenarios.pair_worker_env(cluster.namespace),
        check=_one_leader_one_standby,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fault_loses_nothing(
    name: str, make_run: MakeRun, cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    case = CASES[name]
    seed = run_seed()
    overrides: dict[str, str] = {}
    if case.own_broker:
        state = request.getfixturevalue("own_broker").status()
        assert state is not None
        overrides["KAFKA_BOOTSTRAP_SERVERS"] = state.bootstrap
    if case.differ_state:
        state_dir = request.getfixturevalue("tmp_path") / "differ-state"
        overrides["DELTAWATCH_DIFFER_STATE_DIR"] = str(state_dir)
    worker_env = case.worker_env(cluster) if case.worker_env is not None else None
    run = make_run(replicas=case.replicas, worker_env=worker_env, **overrides)
    run.start_all()
    for subscription in default_subscriptions(case.instances):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, case.instances, seed)
    report = case.script(run, driver, random.Random(seed), request)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    crashes = [c for c in report.crashes if not c.endswith(case.allowed_exits)]
    assert crashes == [], report.crashes
    assert report.verdict.notifications > 0, "no callback arrived: nothing was checked"
    case.check(run, report)


def _keys_told_per_cluster(receipts: list[Receipt]) -> dict[str, set[tuple[str, str, str]]]:
    told: dict[str, set[tuple[str, str, str]]] = {}
    delivered, _ = delivered_in_order(receipts)
    for receipt in delivered:
        for entries in receipt.payload["resource-changes"].values():
            for entry in entries:
                cluster, *rest = entry_key(entry)
                told.setdefault(cluster, set()).add((rest[0], rest[1], rest[2]))
    return told


def test_two_clusters_with_sigkills_lose_nothing(
    make_run: MakeRun, cluster: Cluster, west_cluster: Cluster
) -> None:
    """Issue 18: two API servers (east, west), one watcher each, one differ and notifier on
    2 partitions; both clusters change at once (the same instances and object names in
    both) while the differ, a watcher and the notifier are SIGKILLed and a watcher is
    SIGTERMed and restarted (its cluster lists again while the other flows). The oracle
    names objects by cluster: 0 lost, 0 spurious, no bad duplicate, no sequence gap."""
    seed = run_seed()
    run = make_run(
        replicas=scenarios.CLUSTERS_REPLICAS,
        worker_env=scenarios.clusters_worker_env(
            [cluster.server.kubeconfig, west_cluster.server.kubeconfig]
        ),
        DELTAWATCH_PARTITIONS=scenarios.CLUSTERS_PARTITIONS,
    )
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    drivers = [
        ClusterDriver(c.api, c.namespace, INSTANCES, seed + i, cluster=name)
        for i, (name, c) in enumerate(zip(scenarios.CLUSTERS, [cluster, west_cluster], strict=True))
    ]
    report = scenarios.cluster_rounds(run, drivers, random.Random(seed), 150, rounds=3)
    print(report)
    assert report.faults == 4  # 3 SIGKILLs (differ, a watcher, notifier) and 1 SIGTERM
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == [], report.crashes
    assert report.verdict.notifications > 0, "no callback arrived: nothing was checked"
    # the mix-up the oracle guards against was possible: the same names told from both
    told = _keys_told_per_cluster(run.receipts(run.subscriptions[0].path))
    assert set(told) == set(scenarios.CLUSTERS), told.keys()
    assert told["east"] & told["west"], "no namespace/name was told from both clusters"
