"""Two notifier replicas: the dataspace's state lives with one, the anchors' deltas with both.

Every replica must route by every dataspace's subscription (the CPS directory), so anchors on
partitions the commands partition's owner does not hold still get their events. Also the
directory's Kafka edge on its own: it reads ``cps/`` records of every partition.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deltawatch.kafka_clients import make_admin, make_producer
from deltawatch.settings import CommonSettings, NotifierSettings
from deltawatch.topics import contract_topics, ensure_topics
from services.notifier.cps.directory import CpsDirectory, CpsDirectoryReader
from services.notifier.cps.subscriptions import SUBSCRIBE, apply_command, encode_state
from tests.notifier.conftest import Commands, Deltas, NotifierProcess, pod
from tests.notifier.cps.conftest import of_anchor, wait_cps

pytestmark = pytest.mark.kafka

ANCHORS = [f"anchor-{i:02d}" for i in range(20)]


def _cps_events(process: NotifierProcess) -> float:
    for line in process.metrics().splitlines():
        if line.startswith("deltawatch_notifier_cps_events_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_replica_routes_by_every_dataspace(
    notifier_env: dict[str, str],
    tmp_path: Path,
    commands: Commands,
    deltas: Deltas,
    settings: CommonSettings,
) -> None:
    replicas = [
        NotifierProcess(
            {**notifier_env, "DELTAWATCH_TRANSACTIONAL_ID": f"{name}-{tmp_path.name}"},
            tmp_path / f"{name}.log",
        )
        for name in ("replica-a", "replica-b")
    ]
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:  # the second join rebalanced the first
            replica.wait_ready()
        result = commands.send(
            {"action": "subscribe-delta-notification", "dataspace": "ds1", "anchors": []}
        )
        assert result["status"] == "accepted", result
        for anchor in ANCHORS:
            deltas.send(anchor, created=[pod("a")])
        records = wait_cps(
            settings, lambda rs: all(of_anchor(rs, a) for a in ANCHORS), timeout_s=60
        )
        assert {r.key for r in records} == {f"ds1:{a}" for a in ANCHORS}
        assert all(r.data["operation"] == "CREATE" for r in records)
        # Both replicas published: the one without ds1's partition used its directory.
        assert all(_cps_events(replica) > 0 for replica in replicas), [
            replica.logs() for replica in replicas
        ]
    finally:
        for replica in replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.kill()


def test_directory_reader_sees_cps_states_of_every_partition(
    topic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in topic_env.items():
        monkeypatch.setenv(name, value)
    settings = NotifierSettings()
    ensure_topics(make_admin(settings), [contract_topics(settings)["subscriptions"]])
    producer = make_producer(settings, client_id="test-directory")
    topic = settings.subscriptions_topic
    for partition, dataspace in enumerate(("ds0", "ds1", "ds2")):
        state = apply_command(None, dataspace, SUBSCRIBE, ["a"], at_ms=1)
        producer.produce(
            topic, key=f"cps/{dataspace}".encode(), value=encode_state(state), partition=partition
        )
    producer.produce(topic, key=b"inst/sub", value=b'{"name": "sub"}', partition=0)
    producer.flush(10)
    directory = CpsDirectory()
    reader = CpsDirectoryReader(settings, directory)
    try:
        reader.start()  # reads to the end offsets found at start
        assert sorted(directory.outside(set())) == ["ds0", "ds1", "ds2"]
        assert sorted(directory.outside({1})) == ["ds0", "ds2"]
        producer.produce(topic, key=b"cps/ds1", value=None, partition=1)  # unsubscribed
        producer.flush(10)
        deadline = time.monotonic() + 10
        while "ds1" in directory.outside(set()):
            assert time.monotonic() < deadline, "the tombstone never reached the directory"
            reader.drain()
            time.sleep(0.05)
        assert sorted(directory.outside(set())) == ["ds0", "ds2"]
    finally:
        reader.close()
