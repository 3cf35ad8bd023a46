"""Two differ and two notifier replicas (own transactional ids and ports, same groups); one
of each SIGKILLed: the survivors take over, nothing is lost, nothing repeated under a new id."""

from __future__ import annotations

import random

import pytest

from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.pipeline_run import default_subscriptions, run_seed
from tests.reliability.scenarios import replica_loss

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2", "rel3"]


def test_losing_a_differ_and_a_notifier_replica_loses_nothing(
    make_run: MakeRun, cluster: Cluster
) -> None:
    seed = run_seed()
    run = make_run(replicas={"watcher": 1, "differ": 2, "notifier": 2})
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    report = replica_loss(run, driver, random.Random(seed), changes=200, rounds=1)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == []
    alive = [key for key, w in run.workers.items() if w.process.poll() is None]
    assert len(alive) == 3, f"one differ and one notifier should survive: {alive}"
