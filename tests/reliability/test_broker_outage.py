"""The Kafka broker killed or stopped mid-run, then back: nothing lost, nothing repeated
except under the same webhook-id, delta sequences without gap or repeat.

The broker is this module's own (own run dir and ports, the cached jars), so stopping it
disturbs no other test session.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.pipeline_run import default_subscriptions, run_seed
from tests.reliability.scenarios import broker_outages

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2"]


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(run=tmp_path_factory.mktemp("kafka-run"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_outages_lose_nothing(
    make_run: MakeRun, cluster: Cluster, own_broker: LocalKafkaBroker
) -> None:
    seed = run_seed()
    state = own_broker.status()
    assert state is not None
    run = make_run(KAFKA_BOOTSTRAP_SERVERS=state.bootstrap)
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    report = broker_outages(
        run, driver, random.Random(seed), changes=200, rounds=2, broker=own_broker
    )
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    # A worker may give up on a Kafka call that hangs past its deadline (librdkafka #5456)
    # and exit 1 to be restarted, as Kubernetes would; any other exit is a crash.
    assert all(c.endswith("exited 1") for c in report.crashes), report.crashes
