"""Exactly-once under SIGKILL, and state moving with partitions between two differ processes.

What a ``read_committed`` consumer of the deltas topic must see, however the differ dies:
per instance the sequences 1, 2, 3 … with no gap and no repeat, and deltas that, folded in
order, give exactly the state the input describes.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.differ.resource_diff import apply_batch
from services.differ.resource_event import parse_resource_event
from services.differ.snapshot import PartitionSnapshot
from tests.differ.harness import (
    DifferProcess,
    EventFeed,
    TopicReader,
    changes,
    create_pipeline_topics,
    differ_env,
    fold_state,
    pod,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.reliability]

# The broker's minimum session timeout: a killed member is noticed within 6 s, not 45 s.
FAST_GROUP = json.dumps({"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
INSTANCES = [f"inst-{i}" for i in range(6)]
NAMES = [f"pod-{i}" for i in range(6)]


def expected_state(sent: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Apply every input record, one by one, with the pure core: the state deltas must give."""
    snapshot = PartitionSnapshot()
    for record in sent:
        apply_batch(snapshot, [parse_resource_event(record)]).commit_to(snapshot)
    state: dict[str, dict[str, Any]] = {}
    for instance_id, instance in snapshot.instances.items():
        state[instance_id] = {
            k.name: json.loads(snapshot.bodies.body((instance_id, k))) for k in instance.resources
        }
    return state


def script_chunks(rng: random.Random, feed: EventFeed, chunks: int, size: int) -> Iterator[None]:
    """Send ``chunks`` seeded chunks of watch events (one with a relist); yield after each."""
    alive: dict[tuple[str, str], int] = {}
    version = 0
    relist_at = rng.randrange(2, chunks - 1)
    for chunk in range(chunks):
        if chunk == relist_at:
            list_id = f"relist-{chunk}"
            feed.marker("LIST_BEGIN", list_id)
            for (instance, name), phase in sorted(alive.items()):
                if rng.random() < 0.15:
                    del alive[(instance, name)]  # deleted while nobody watched
                    continue
                feed.watch("LISTED", pod(name, instance, phase=f"p{phase}"), list_id=list_id)
            feed.marker("LIST_END", list_id)
        for _ in range(size):
            version += 1
            instance, name = rng.choice(INSTANCES), rng.choice(NAMES)
            body_phase = version
            if (instance, name) not in alive:
                alive[(instance, name)] = body_phase
                feed.watch("ADDED", pod(name, instance, phase=f"p{body_phase}"))
            elif rng.random() < 0.75:
                alive[(instance, name)] = body_phase
                feed.watch("MODIFIED", pod(name, instance, phase=f"p{body_phase}"))
            else:
                last = alive.pop((instance, name))
                feed.watch("DELETED", pod(name, instance, phase=f"p{last}"))
        feed.flush()
        yield None


def assert_exact_sequences(reader: TopicReader) -> None:
    ids = Counter(d.headers["ce_id"] for d in reader.deltas())
    assert [i for i, n in ids.items() if n > 1] == [], "duplicate deltas"
    for instance in {d.headers["ce_subject"] for d in reader.deltas()}:
        sequences = [d.data["sequence"] for d in reader.deltas(instance)]
        assert sequences == list(range(1, len(sequences) + 1)), f"{instance}: {sequences}"


@pytest.mark.parametrize("seed", [7, 2024])
def test_sigkill_mid_stream_then_restart_gives_exact_sequences(
    seed: int, topic_env: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(seed)
    env = differ_env(topic_env, DELTAWATCH_BATCH_MAX="4", DELTAWATCH_KAFKA_CONFIG=FAST_GROUP)
    create_pipeline_topics(env)
    feed = EventFeed(env)
    reader = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["DELTAWATCH_DELTAS_TOPIC"])
    chunks = 7
    kill_after = set(rng.sample(range(chunks - 1), 3))
    run = 0
    differ = DifferProcess(env, f"tx-kill-{seed}", tmp_path / f"run{run}.log").start()
    try:
        differ.wait_ready()
        for chunk, _ in enumerate(script_chunks(rng, feed, chunks, 40)):
            if chunk in kill_after:
                # Fault injection: a seeded moment while the differ works through the chunk.
                time.sleep(rng.uniform(0.0, 0.3))
                differ.kill()
                run += 1
                differ = DifferProcess(env, f"tx-kill-{seed}", tmp_path / f"run{run}.log")
                differ.start().wait_ready()
        expected = expected_state(feed.sent)

        def converged() -> bool:
            for instance in INSTANCES:
                if fold_state(reader.deltas(instance)) != expected.get(instance, {}):
                    return False
            return True

        reader.wait_for(converged, "the deltas to describe the final state", timeout_s=60)
        assert_exact_sequences(reader)
        assert any(changes(d)["deleted"] for d in reader.deltas()), "the script deletes"
        assert len(reader.of_type(".synced")) > 0
    finally:
        differ.kill()
        reader.close()


def test_two_differs_split_partitions_and_state_moves_on_rebalance(
    topic_env: dict[str, str], tmp_path: Path
) -> None:
    env = differ_env(topic_env, DELTAWATCH_KAFKA_CONFIG=FAST_GROUP)
    create_pipeline_topics(env)
    feed = EventFeed(env)
    reader = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["DELTAWATCH_DELTAS_TOPIC"])
    instances = [f"inst-{i}" for i in range(12)]
    a = DifferProcess(env, "tx-a", tmp_path / "a.log").start()
    b = DifferProcess(env, "tx-b", tmp_path / "b.log")
    try:
        a.wait_ready()
        for instance in instances:
            for name in ("x", "y"):
                feed.watch("ADDED", pod(name, instance))
        feed.flush()
        reader.wait_for(lambda: len(reader.deltas()) >= len(instances), "phase 1 deltas")
        reader.wait_for(
            lambda: sum(len(changes(d)["created"]) for d in reader.deltas()) == 24, "24 creates"
        )

        phase_one = len(reader.deltas())
        b.start().wait_ready()

        def split() -> bool:
            owned = (
                a.gauge("deltawatch_differ_assigned_partitions"),
                b.gauge("deltawatch_differ_assigned_partitions"),
            )
            return min(owned) >= 1 and sum(owned) == 3

        wait_until(split, 60, "the partitions split between a and b")
        assert (
            a.gauge("deltawatch_differ_tracked_resources")
            + b.gauge("deltawatch_differ_tracked_resources")
            == 24
        )
        assert b.gauge("deltawatch_differ_tracked_resources") > 0, "b restored moved state"

        def modify_all(phase: str) -> None:
            for instance in instances:
                for name in ("x", "y"):
                    feed.watch("MODIFIED", pod(name, instance, phase=phase))
            feed.flush()

        def all_modified(phase: str) -> bool:
            return all(
                fold_state(reader.deltas(i)) == {n: pod(n, i, phase=phase) for n in ("x", "y")}
                for i in instances
            )

        modify_all("two")
        reader.wait_for(lambda: all_modified("two"), "phase 2 modifications")

        code, took = a.terminate()
        assert (code, took < 10) == (0, True)
        wait_until(lambda: b.gauge("deltawatch_differ_assigned_partitions") == 3, 60, "b owns all")
        assert b.gauge("deltawatch_differ_tracked_resources") == 24
        modify_all("three")
        reader.wait_for(lambda: all_modified("three"), "phase 3 modifications")

        assert_exact_sequences(reader)
        after_phase_one = reader.deltas()[phase_one:]
        assert len(after_phase_one) >= 2 * len(instances)
        assert all(changes(d)["created"] == [] for d in after_phase_one), "no spurious creates"
    finally:
        a.kill()
        b.kill()
        reader.close()


@pytest.mark.parametrize("when", ["idle", "mid-batch"])
def test_a_fenced_differ_exits_1_with_one_clear_line_and_no_traceback(
    when: str, topic_env: dict[str, str], tmp_path: Path
) -> None:
    """A newer process with the same transactional.id fences the old one: it must just stop.

    Idle, the old one learns it at its next heartbeat transaction; mid-batch, a produce() call
    fails while earlier records of the batch are still queued (a fatal producer that must not
    be flushed).
    """
    heartbeat = "0.3" if when == "idle" else "300"
    env = differ_env(topic_env, DELTAWATCH_HEARTBEAT_S=heartbeat)
    create_pipeline_topics(env)
    old = DifferProcess(env, "tx-fenced", tmp_path / "old.log").start()
    # Its own group, so the two never share partitions: only the transactional.id collides.
    # And as if on another host (its own lock directory and host name): on the same host the
    # id's lock would make the newer one refuse to start instead (test_member_ids.py).
    (tmp_path / "other-host").mkdir()
    newer_env = {
        **env,
        "DELTAWATCH_DIFFER_GROUP_ID": env["DELTAWATCH_DIFFER_GROUP_ID"] + "-new",
        "TMPDIR": str(tmp_path / "other-host"),
        "HOSTNAME": "other-host",
    }
    newer = DifferProcess(newer_env, "tx-fenced", tmp_path / "new.log")
    try:
        old.wait_ready()
        newer.start().wait_ready()
        if when == "mid-batch":
            feed = EventFeed(env)
            for i in range(3000):
                feed.watch("ADDED", pod(f"p-{i}", f"inst-{i % 300}"))
            feed.flush()
        assert old.process is not None
        code = old.process.wait(timeout=30)
        log = old.log_text()
        assert code == 1, log
        assert "Traceback" not in log, log
        ours = [line for line in log.splitlines() if line.startswith("{")]
        fatal_lines = [line for line in ours if "fatal Kafka error" in line]
        assert len(fatal_lines) == 1, log
        assert "fenced" in fatal_lines[0].lower(), fatal_lines[0]
        assert not [line for line in ours if '"level": "warning"' in line], log
        assert newer.alive()
        assert newer.ready()
    finally:
        old.kill()
        newer.kill()
