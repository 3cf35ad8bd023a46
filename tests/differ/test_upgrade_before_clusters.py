"""Upgrade (CONTRACT §10): a differ changelog written by the release before clusters.

The changelog is the fixture made by that release's own code path
(``tests/fixtures/legacy/make_changelog_before_clusters.py``), written to the changelog topic
before the upgraded differ starts, as the old differ would have left it. The upgraded differ
must restore it as its ``DELTAWATCH_CLUSTER``, report nothing when the watcher relists the
same objects, and carry on each instance's ``sequence``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from deltawatch.topics import TopicSpec, ensure_topics
from tests.differ.harness import (
    DifferProcess,
    EventFeed,
    TopicReader,
    changes,
    create_pipeline_topics,
    differ_env,
)

LEGACY_CHANGELOG = (
    Path(__file__).resolve().parents[1] / "fixtures/legacy/differ-changelog-before-clusters.jsonl"
)


def legacy_records() -> list[dict[str, Any]]:
    lines = LEGACY_CHANGELOG.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def env(topic_env: dict[str, str]) -> dict[str, str]:
    env = differ_env(topic_env, DELTAWATCH_PARTITIONS="1")
    create_pipeline_topics(env)
    changelog = env["DELTAWATCH_DIFFER_CHANGELOG_TOPIC"]
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    ensure_topics(admin, [TopicSpec(changelog, 1, compacted=True)])
    producer = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    for record in legacy_records():
        value = record["value"]
        producer.produce(
            changelog, key=record["key"].encode(), value=None if value is None else value.encode()
        )
    assert producer.flush(30) == 0
    return env


def test_the_upgraded_differ_restores_the_old_changelog_and_reports_nothing_spurious(
    env: dict[str, str], deltas: TopicReader, tmp_path: Path
) -> None:
    differ = DifferProcess(env, "tx-upgrade", tmp_path / "differ.log").start()
    try:
        differ.wait_ready()
        assert differ.gauge("deltawatch_differ_tracked_resources") == 3
        # The watcher of the upgraded pipeline relists exactly what the old one had seen.
        told = {}
        for record in legacy_records():
            if record["key"].startswith('["r"'):
                name = json.loads(record["key"])[-1]
                value = record["value"]
                told[name] = None if value is None else json.loads(value.split("\n", 1)[1])
        feed = EventFeed(env)
        feed.marker("LIST_BEGIN", "relist-1", kind="ConfigMap")
        for body in told.values():
            if body is not None:
                feed.watch("LISTED", body, list_id="relist-1")
        feed.marker("LIST_END", "relist-1", kind="ConfigMap")
        feed.flush()
        deltas.wait_for(lambda: len(deltas.of_type(".synced")) == 2, "both instances synced")
        assert deltas.deltas() == [], "nothing changed: nothing to report"
        # A real change afterwards continues the instance's sequence, as this cluster's.
        changed = {**told["cm-b"], "data": {"v": "after-upgrade"}}
        feed.watch("MODIFIED", changed)
        feed.flush()
        deltas.wait_for(lambda: len(deltas.deltas()) == 1, "the modification")
        [delta] = deltas.deltas()
        assert delta.headers["ce_id"] == "i1:3"
        assert delta.headers["ce_source"] == "/deltawatch/clusters/test-cluster"
        assert changes(delta) == {"created": [], "deleted": [], "modified": ["cm-b"]}
        assert delta.data["resource-changes"]["modified"][0]["cluster"] == "test-cluster"
    finally:
        differ.kill()
