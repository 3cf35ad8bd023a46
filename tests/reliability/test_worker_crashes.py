"""Workers killed (SIGKILL) or stopped (SIGTERM) mid-run lose nothing and repeat nothing
except under the same webhook-id."""

from __future__ import annotations

import random

import pytest

from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.pipeline_run import default_subscriptions, run_seed
from tests.reliability.scenarios import sigkill_rounds, sigterm_rounds

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2"]


def test_sigkill_of_random_workers_loses_nothing(make_run: MakeRun, cluster: Cluster) -> None:
    seed = run_seed()
    run = make_run()
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    report = sigkill_rounds(run, driver, random.Random(seed), changes=300, rounds=4)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == []
    assert report.verdict.notifications > 0


def test_sigterm_of_each_worker_is_graceful_and_loses_nothing(
    make_run: MakeRun, cluster: Cluster
) -> None:
    seed = run_seed()
    run = make_run()
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    report = sigterm_rounds(run, driver, random.Random(seed), changes=200, rounds=3)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == []
