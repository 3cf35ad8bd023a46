"""The differ process against the real broker: deltas, lists, restart, poison, heartbeats."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from deltawatch.schema_files import load_schema_document
from tests.differ.harness import (
    DifferProcess,
    EventFeed,
    TopicReader,
    changes,
    create_pipeline_topics,
    differ_env,
    pod,
)

pytestmark = pytest.mark.kafka

SCHEMA = load_schema_document("delta-event.schema.json")


def validate(data: object, definition: str | None = None) -> None:
    schema = SCHEMA if definition is None else {**SCHEMA, **SCHEMA["$defs"][definition]}
    jsonschema.Draft202012Validator(schema).validate(data)


TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def env(topic_env: dict[str, str]) -> dict[str, str]:
    env = differ_env(topic_env)
    create_pipeline_topics(env)
    return env


@pytest.fixture
def differ(env: dict[str, str], tmp_path: Path) -> Iterator[DifferProcess]:
    process = DifferProcess(env, f"tx-{env['DELTAWATCH_DIFFER_GROUP_ID']}", tmp_path / "d.log")
    process.start().wait_ready()
    yield process
    process.kill()


@pytest.fixture
def feed(env: dict[str, str]) -> EventFeed:
    return EventFeed(env)


def test_create_modify_delete_give_contract_cloud_events(
    differ: DifferProcess, feed: EventFeed, deltas: TopicReader
) -> None:
    feed.watch("ADDED", pod("web-0", "inst-1"))
    feed.flush()
    deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 1, "the create delta")
    first = deltas.deltas("inst-1")[0]
    assert first.key == b"inst-1"
    assert first.headers["ce_specversion"] == "1.0"
    assert first.headers["ce_id"] == "inst-1:1"
    assert first.headers["ce_source"] == "/deltawatch/clusters/test-cluster"
    assert first.headers["ce_type"] == "org.deltawatch.instance.status.delta"
    assert first.headers["ce_subject"] == "inst-1"
    assert TIME.match(first.headers["ce_time"])
    assert first.headers["content-type"] == "application/json"
    assert first.data == {
        "instance-id": "inst-1",
        "cluster": "test-cluster",
        "sequence": 1,
        "resource-changes": {
            "created": [
                {
                    "name": "web-0",
                    "namespace": "ns",
                    "cluster": "test-cluster",
                    "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
                    "status": pod("web-0", "inst-1"),
                }
            ],
            "deleted": [],
            "modified": [],
        },
    }

    # Only resourceVersion changes: no delta; then a real change: sequence 2, modified.
    feed.watch("MODIFIED", pod("web-0", "inst-1", rv="2"))
    feed.watch("MODIFIED", pod("web-0", "inst-1", rv="3", phase="Failed"))
    feed.flush()
    deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 2, "the modify delta")
    second = deltas.deltas("inst-1")[1]
    assert second.headers["ce_id"] == "inst-1:2"
    assert changes(second) == {"created": [], "deleted": [], "modified": ["web-0"]}
    assert second.data["resource-changes"]["modified"][0]["status"]["status"]["phase"] == "Failed"

    feed.watch("DELETED", pod("web-0", "inst-1", rv="4", phase="Failed"))
    feed.flush()
    deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 3, "the delete delta")
    third = deltas.deltas("inst-1")[2]
    assert third.data["sequence"] == 3
    assert changes(third) == {"created": [], "deleted": ["web-0"], "modified": []}
    assert (
        third.data["resource-changes"]["deleted"][0]["status"]["metadata"]["resourceVersion"] == "4"
    )
    for delta in deltas.deltas("inst-1"):
        validate(delta.data)
    with pytest.raises(jsonschema.ValidationError):
        validate({**first.data, "sequence": 0})
    # Same partition number as the input (instance-id keyed).
    assert {d.partition for d in deltas.deltas("inst-1")} == {first.partition}
    metrics = differ.metrics()
    assert 'deltawatch_differ_resource_changes_total{change="created"} 1.0' in metrics
    assert 'deltawatch_differ_transactions_total{outcome="committed"}' in metrics


def test_list_with_missing_object_deletes_it_then_synced(
    differ: DifferProcess, feed: EventFeed, deltas: TopicReader
) -> None:
    feed.watch("ADDED", pod("a", "inst-1"))
    feed.watch("ADDED", pod("b", "inst-1"))
    feed.flush()
    deltas.wait_for(
        lambda: sum(len(changes(d)["created"]) for d in deltas.deltas("inst-1")) == 2, "creates"
    )
    before = len(deltas.deltas("inst-1"))
    feed.marker("LIST_BEGIN", "list-1")
    feed.watch("LISTED", pod("a", "inst-1", rv="7"), list_id="list-1")
    feed.marker("LIST_END", "list-1")
    feed.flush()
    deltas.wait_for(lambda: len(deltas.of_type(".synced")) == 1, "the synced event")
    new = deltas.deltas("inst-1")[before:]
    assert [changes(d) for d in new] == [{"created": [], "deleted": ["b"], "modified": []}]
    synced = deltas.of_type(".synced")[0]
    validate(synced.data, "synced")
    assert synced.headers["ce_subject"] == "inst-1"
    assert synced.data["sequence"] == new[0].data["sequence"]
    # The synced event follows the deletion in the instance's partition.
    assert (synced.partition, synced.offset) > (new[0].partition, new[0].offset)


def test_restart_restores_state_without_spurious_creates(
    env: dict[str, str], feed: EventFeed, deltas: TopicReader, tmp_path: Path
) -> None:
    for i in range(20):
        feed.watch("ADDED", pod(f"p{i}", f"inst-{i % 4}"))
    feed.flush()
    first = DifferProcess(env, "tx-restart", tmp_path / "1.log").start()
    first.wait_ready()
    # Ready means caught up with what was there at start: all 20 creates are committed.
    deltas.poll()
    assert sum(len(changes(d)["created"]) for d in deltas.deltas()) == 20
    code, took = first.terminate()
    assert code == 0
    assert took < 10

    second = DifferProcess(env, "tx-restart", tmp_path / "2.log").start()
    try:
        second.wait_ready()
        assert "deltawatch_differ_tracked_resources 20.0" in second.metrics()
        for i in range(20):  # the same objects again (e.g. a relist): nothing changed
            feed.watch("ADDED", pod(f"p{i}", f"inst-{i % 4}", rv="2"))
        feed.watch("MODIFIED", pod("p0", "inst-0", phase="Pending"))
        feed.flush()
        deltas.wait_for(lambda: len(deltas.deltas()) == 5, "the modification")
        last = deltas.deltas()[-1]
        assert last.headers["ce_id"] == "inst-0:2"
        assert changes(last) == {"created": [], "deleted": [], "modified": ["p0"]}
    finally:
        second.kill()


def test_poison_records_go_to_the_dlq_and_the_differ_keeps_going(
    differ: DifferProcess, env: dict[str, str], feed: EventFeed, deltas: TopicReader
) -> None:
    feed.raw(b"inst-1", b"not avro at all")
    feed.raw(b"inst-1", b"\xc3\x01" + b"\x00" * 8 + b"body")  # unknown schema fingerprint
    bad_object = feed.record("ADDED", instance_id="inst-1", name="x", namespace="ns")
    bad_object["object"] = "{not json"
    feed.raw(b"inst-1", feed.serde.encode(bad_object))
    feed.watch("ADDED", pod("ok", "inst-1"))
    feed.flush()
    dlq = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["DELTAWATCH_DIFFER_DLQ_TOPIC"])
    try:
        dlq.wait_for(lambda: len(dlq.seen) == 3, "three dead letters")
        deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 1, "the good record's delta")
        letters = sorted(dlq.seen, key=lambda d: d.data["offset"])
        reasons = [d.data["reason"] for d in letters]
        assert "not an Avro record" in reasons[0]
        assert "unknown schema fingerprint" in reasons[1]
        assert "not valid JSON" in reasons[2]
        assert base64.b64decode(letters[0].data["value"]) == b"not avro at all"
        assert [d.data["offset"] for d in letters] == [0, 1, 2]
        assert {d.data["topic"] for d in letters} == {env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"]}
        assert differ.alive()
        assert "deltawatch_differ_dead_letters_total 3.0" in differ.metrics()
    finally:
        dlq.close()


def test_heartbeats_per_partition_when_idle(
    env: dict[str, str], deltas: TopicReader, tmp_path: Path
) -> None:
    process = DifferProcess(
        {**env, "DELTAWATCH_HEARTBEAT_S": "0.3"}, "tx-heartbeat", tmp_path / "h.log"
    ).start()
    try:
        process.wait_ready()
        deltas.wait_for(
            lambda: {d.partition for d in deltas.of_type(".heartbeat")} == {0, 1, 2},
            "a heartbeat on every partition",
        )
        beat = deltas.of_type(".heartbeat")[0]
        validate(beat.data, "heartbeat")
        assert "ce_subject" not in beat.headers
        assert set(beat.data) == {"cluster", "partition", "time"}
        assert beat.data["partition"] == beat.partition
        assert TIME.match(beat.data["time"])
        assert beat.headers["ce_source"] == "/deltawatch/clusters/test-cluster"
    finally:
        process.kill()


def test_deltas_tail_prints_events(
    differ: DifferProcess, env: dict[str, str], feed: EventFeed, deltas: TopicReader
) -> None:
    import os
    import subprocess
    import sys

    feed.watch("ADDED", pod("web-0", "inst-9"))
    feed.flush()
    deltas.wait_for(lambda: len(deltas.deltas("inst-9")) == 1, "a delta to tail")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from deltawatch_tools.cli import main; main()",
            "deltas",
            "tail",
            "--from-beginning",
            "--max-events",
            "1",
            "--output",
            "json",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[0])
    assert line["id"] == "inst-9:1"
    assert line["type"] == "org.deltawatch.instance.status.delta"
    assert line["data"]["resource-changes"]["created"][0]["name"] == "web-0"
