"""kube-apiserver restarts (every watch drops) and etcd compaction (re-watch answers 410 Gone)
lose nothing: the watcher relists and the differ reports what changed meanwhile."""

from __future__ import annotations

import random

import pytest

from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.pipeline_run import default_subscriptions, run_seed
from tests.reliability.scenarios import kube_faults

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2"]


def test_apiserver_restarts_and_410s_lose_nothing(make_run: MakeRun, cluster: Cluster) -> None:
    seed = run_seed()
    # the suite's server runs with the watch cache off (conftest): a watch from a compacted
    # revision goes to etcd and gets 410 Gone
    run = make_run()
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    report = kube_faults(run, driver, random.Random(seed), 200, rounds=2, server=cluster.server)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == []
    relists = run.metric("watcher", 0, "deltawatch_watcher_relists_total", reason="expired")
    assert relists > 0, "no watch was ever refused with 410: the faults did not bite"
