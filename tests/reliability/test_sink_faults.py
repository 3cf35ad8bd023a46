"""The subscriber down, answering 500 / 429 + Retry-After, or hanging: every change still
arrives, duplicates only under the same webhook-id, never closer than the interval."""

from __future__ import annotations

import random

import pytest

from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.pipeline_run import default_subscriptions, run_seed
from tests.reliability.scenarios import sink_faults

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2"]


def test_sink_outages_and_errors_lose_nothing(make_run: MakeRun, cluster: Cluster) -> None:
    seed = run_seed()
    run = make_run()
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    report = sink_faults(run, driver, random.Random(seed), changes=300, rounds=4)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == []
    served = run.sink.served
    for mode in ("500", "429", "hang"):
        assert served[mode], f"the sink never answered {mode}: {served}"
