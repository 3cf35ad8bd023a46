"""Hostile input on both public entry points while real traffic flows: every bad command is
answered "rejected" exactly once, every unreadable resource event lands once in the differ's
dead-letter topic, no worker exits, and the good traffic around them arrives intact."""

from __future__ import annotations

import json
import random
import struct
from collections import defaultdict
from typing import Any

import pytest

from deltawatch.avro_serde import AvroSerde
from deltawatch.kafka_clients import make_producer
from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.conftest import Cluster, MakeRun
from tests.reliability.hostile_input import (
    DENIED_NETWORK,
    BadCommand,
    garbage_resource_events,
    generated_commands,
    hand_picked_commands,
)
from tests.reliability.pipeline_run import (
    Report,
    default_subscriptions,
    finish,
    run_seed,
)

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.kube]
INSTANCES = ["rel0", "rel1", "rel2"]


def _wrong_fingerprint(env: dict[str, str]) -> bytes:
    """A well-formed resource event whose single-object header names another schema."""
    serde = AvroSerde.from_file(
        "resource-event.avsc", env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"], None
    )
    good = serde.encode(
        {
            "type": "ADDED",
            "cluster": "default",
            "instance_id": "rel0",
            "group": "",
            "version": "v1",
            "kind": "ConfigMap",
            "namespace": "reliability",
            "name": "forged",
            "uid": "u",
            "resource_version": "1",
            "object": json.dumps({"kind": "ConfigMap", "metadata": {"name": "forged"}}),
            "observed_at": 0,
            "list_id": None,
        }
    )
    fingerprint = struct.unpack("<Q", good[2:10])[0]
    return good[:2] + struct.pack("<Q", fingerprint ^ 0xFFFF) + good[10:]


def test_hostile_commands_and_events_are_refused_and_good_traffic_flows(
    make_run: MakeRun, cluster: Cluster
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    run = make_run(DELTAWATCH_CALLBACK_DENY_NETWORKS=DENIED_NETWORK)
    run.start_all()
    for subscription in default_subscriptions(INSTANCES):
        run.subscribe(subscription)
    driver = ClusterDriver(cluster.api, cluster.namespace, INSTANCES, seed)
    settings = run.settings

    bad_commands = hand_picked_commands() + generated_commands(seed, 60)
    good_commands = [
        {
            "command-id": f"good-{i}",
            "action": "create",
            "instance-id": f"gut-ünïcode-{i}",
            "subscription": {
                "name": f"sübscription-✓-\u202e{i}",  # RTL override: a format char, allowed
                "callback-url": run.sink.url(f"unused-{i}"),
                "min-notify-interval": 0,
                "metadata": {"note": "日本語 ✓", "n": i},
            },
        }
        for i in range(5)
    ]
    garbage = garbage_resource_events()
    garbage.append(("wrong single-object fingerprint", b"rel0", _wrong_fingerprint(run.env)))

    placed: dict[int, tuple[str, int, int]] = {}  # id(record) → (topic, partition, offset)

    def remember(key: int) -> Any:
        def on_delivery(error: Any, message: Any) -> None:
            assert error is None, error
            placed[key] = (message.topic(), message.partition(), message.offset())

        return on_delivery

    producer = make_producer(settings, client_id="reliability-hostile")
    records: list[tuple[str, bytes | None, bytes, int]] = []
    for bad in bad_commands:
        records.append((settings.commands_topic, b"hostile", bad.raw, id(bad)))
    for good in good_commands:
        records.append(
            (
                settings.commands_topic,
                str(good["instance-id"]).encode(),
                json.dumps(good).encode(),
                id(good),
            )
        )
    for entry in garbage:
        records.append((settings.resource_events_topic, entry[1], entry[2], id(entry)))
    rng.shuffle(records)

    changes = 200
    per_change = max(1, len(records) // changes + 1)
    report = Report("hostile", seed)
    for i in range(changes):
        for topic, key, value, ident in records[i * per_change : (i + 1) * per_change]:
            producer.produce(topic, key=key, value=value, on_delivery=remember(ident))
            report.faults += 1
        producer.poll(0)
        driver.step()
    assert producer.flush(30) == 0
    report = finish(run, driver, report)
    print(report)
    assert report.verdict.problems == [], report.verdict.problems
    assert report.crashes == []
    assert all(w.process.poll() is None for w in run.workers.values()), "a worker exited"

    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in run.read_topic(settings.command_results_topic):
        results[(message.key() or b"").decode()].append(json.loads(message.value() or b"null"))

    def results_of(command: BadCommand | dict[str, Any], raw_id: str | None) -> list[Any]:
        topic, partition, offset = placed[id(command)]
        by_offset = results.get(f"{topic}/{partition}/{offset}", [])
        return by_offset + (results.get(raw_id, []) if raw_id else [])

    wrong = []
    for bad in bad_commands:
        answered = results_of(bad, bad.command_id)
        if len(answered) != 1 or answered[0]["status"] != "rejected":
            wrong.append((bad.why, bad.raw[:120], answered))
    assert wrong == [], wrong
    for good in good_commands:
        answered = results_of(good, str(good["command-id"]))
        assert [r["status"] for r in answered] == ["accepted"], (good, answered)

    dead = defaultdict(list)
    for message in run.read_topic(run.env["DELTAWATCH_DIFFER_DLQ_TOPIC"]):
        letter = json.loads(message.value() or b"null")
        dead[(letter["topic"], letter["partition"], letter["offset"])].append(letter)
    for entry in garbage:
        assert len(dead[placed[id(entry)]]) == 1, (entry[0], dict(dead))
