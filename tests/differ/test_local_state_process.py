"""The differ with ``DELTAWATCH_DIFFER_STATE_DIR``: objects on disk, restarts without a restore.

What a user relies on: the same deltas as without local state (a deletion reports the object
as last seen, now read from disk), a restart or crash of a current differ that does not re-read
the changelog, and a differ whose local state is stale (the partitions were processed by
another process meanwhile) that notices and restores from the changelog instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.differ.local_state import LocalStateDb
from tests.differ.harness import (
    DifferProcess,
    EventFeed,
    TopicReader,
    changes,
    create_pipeline_topics,
    differ_env,
    fold_state,
    launch,
    pod,
    wait_until,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def env(topic_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = differ_env(topic_env, DELTAWATCH_DIFFER_STATE_DIR=str(tmp_path / "state"))
    create_pipeline_topics(env)
    return env


@pytest.fixture
def feed(env: dict[str, str]) -> EventFeed:
    return EventFeed(env)


def restores(process: DifferProcess) -> dict[str, float]:
    """``deltawatch_differ_restores_total`` by source."""
    found = re.findall(
        r'^deltawatch_differ_restores_total\{source="(\w+)"\} (\S+)$', process.metrics(), re.M
    )
    return {source: float(count) for source, count in found}


def start(
    processes: list[DifferProcess], env: dict[str, str], log: Path, **extra: str
) -> DifferProcess:
    """The test's differ (always member ``tx-local``), started and ready."""
    process = launch(processes, {**env, **extra}, "tx-local", log)
    process.wait_ready()
    return process


def test_a_restarted_differ_restores_from_local_state_and_reports_deletes_from_disk(
    env: dict[str, str],
    feed: EventFeed,
    deltas: TopicReader,
    tmp_path: Path,
    processes: list[DifferProcess],
) -> None:
    # A first list, as a watcher starts: its markers reach every partition.
    feed.marker("LIST_BEGIN", "list-0")
    for i in range(12):
        feed.watch("LISTED", pod(f"p{i}", f"inst-{i % 3}", phase=f"phase-{i}"), list_id="list-0")
    feed.marker("LIST_END", "list-0")
    feed.flush()
    first = start(processes, env, tmp_path / "1.log")
    assert restores(first) == {"changelog": 3.0}  # nothing local yet
    deltas.poll()
    assert sum(len(changes(d)["created"]) for d in deltas.deltas()) == 12
    code, _took = first.terminate()
    assert code == 0

    second = start(processes, env, tmp_path / "2.log")
    assert restores(second) == {"local": 3.0}
    assert "deltawatch_differ_tracked_resources 12.0" in second.metrics()
    # A relist that misses p0: its deletion reports the object it had, read from disk.
    feed.marker("LIST_BEGIN", "list-1")
    for i in range(1, 12):
        feed.watch("LISTED", pod(f"p{i}", f"inst-{i % 3}", phase=f"phase-{i}"), list_id="list-1")
    feed.marker("LIST_END", "list-1")
    feed.flush()
    deltas.wait_for(lambda: len(deltas.of_type(".synced")) == 6, "the second synced events")
    [deletion] = deltas.deltas("inst-0")[-1:]
    [deleted] = deletion.data["resource-changes"]["deleted"]
    assert (deleted["name"], deleted["status"]["status"]["phase"]) == ("p0", "phase-0")
    # The local write follows the commit: the gauges are refreshed once it is done.
    wait_until(
        lambda: "deltawatch_differ_tracked_resources 11.0" in second.metrics(), 30, "the gauge"
    )

    # Killed, not stopped: what was committed is on disk all the same.
    assert second.process is not None
    second.process.kill()
    second.process.wait()
    feed.watch("MODIFIED", pod("p1", "inst-1", phase="later"))
    feed.flush()
    third = start(processes, env, tmp_path / "3.log")
    assert restores(third) == {"local": 3.0}
    deltas.wait_for(lambda: "later" in str(deltas.deltas("inst-1")[-1].data), "the modification")
    assert changes(deltas.deltas("inst-1")[-1]) == {
        "created": [],
        "deleted": [],
        "modified": ["p1"],
    }
    assert fold_state(deltas.deltas("inst-1"))["p1"]["status"]["phase"] == "later"


def test_a_differ_whose_local_state_is_stale_restores_from_the_changelog(
    env: dict[str, str],
    feed: EventFeed,
    deltas: TopicReader,
    tmp_path: Path,
    processes: list[DifferProcess],
) -> None:
    feed.marker("LIST_BEGIN", "list-0")
    feed.watch("LISTED", pod("a", "inst-1"), list_id="list-0")
    feed.marker("LIST_END", "list-0")
    feed.flush()
    first = start(processes, env, tmp_path / "1.log")
    deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 1, "the creation")
    assert first.terminate()[0] == 0

    # The same member elsewhere (another state directory) processes the partitions meanwhile.
    elsewhere = start(processes, env, tmp_path / "2.log", DELTAWATCH_DIFFER_STATE_DIR="")
    feed.watch("ADDED", pod("b", "inst-1"))
    feed.watch("DELETED", pod("a", "inst-1"))
    feed.flush()
    deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 2, "the second delta")
    assert elsewhere.terminate()[0] == 0

    again = start(processes, env, tmp_path / "3.log")
    # inst-1's partition moved on elsewhere; the other two did not, their local state is current.
    assert restores(again) == {"local": 2.0, "changelog": 1.0}
    # Its snapshot is the changelog's: b exists, a does not (a stale copy would say otherwise).
    feed.watch("MODIFIED", pod("b", "inst-1", phase="Pending"))
    feed.watch("ADDED", pod("a", "inst-1"))
    feed.flush()
    deltas.wait_for(lambda: len(deltas.deltas("inst-1")) == 3, "the third delta")
    assert changes(deltas.deltas("inst-1")[-1]) == {
        "created": ["a"],
        "deleted": [],
        "modified": ["b"],
    }


def test_state_of_partitions_another_member_took_is_dropped_after_the_delay(
    env: dict[str, str], feed: EventFeed, tmp_path: Path, processes: list[DifferProcess]
) -> None:
    feed.marker("LIST_BEGIN", "list-0")
    for i in range(6):
        feed.watch("LISTED", pod(f"p{i}", f"inst-{i}"), list_id="list-0")
    feed.marker("LIST_END", "list-0")
    feed.flush()
    first = start(processes, env, tmp_path / "1.log", DELTAWATCH_DIFFER_STATE_CLEANUP_DELAY_S="2")
    assert first.gauge("deltawatch_differ_local_state_partitions") == 3.0

    # A second member joins the group: the first gives up some partitions, their state stays
    # for the delay (they may come back), then it is deleted.
    launch(processes, {**env, "DELTAWATCH_DIFFER_STATE_DIR": ""}, "tx-other", tmp_path / "2.log")
    wait_until(lambda: first.gauge("deltawatch_differ_assigned_partitions") < 3, 60, "a rebalance")
    kept = first.gauge("deltawatch_differ_assigned_partitions")
    wait_until(
        lambda: first.gauge("deltawatch_differ_local_state_partitions") == kept,
        30,
        "the revoked partitions' state dropped",
    )
    assert "local state of unowned partitions dropped" in (tmp_path / "1.log").read_text()
    assert first.terminate()[0] == 0

    # What is left on disk is exactly the partitions it still owned.
    database = LocalStateDb(Path(env["DELTAWATCH_DIFFER_STATE_DIR"]) / "tx-local")
    assert len(database.stored_partitions()) == kept
    database.close()


def test_state_found_on_disk_for_partitions_not_assigned_again_is_dropped_after_the_delay(
    env: dict[str, str], feed: EventFeed, tmp_path: Path, processes: list[DifferProcess]
) -> None:
    # Short sessions: the group gives up on the stopped static member within seconds.
    env = {**env, "DELTAWATCH_KAFKA_CONFIG": json.dumps({"session.timeout.ms": 6000})}
    feed.marker("LIST_BEGIN", "list-0")
    for i in range(6):
        feed.watch("LISTED", pod(f"p{i}", f"inst-{i}"), list_id="list-0")
    feed.marker("LIST_END", "list-0")
    feed.flush()
    first = start(processes, env, tmp_path / "1.log")
    assert first.gauge("deltawatch_differ_local_state_partitions") == 3.0
    assert first.terminate()[0] == 0
    # Another member takes over while it is away; then it comes back beside it, with state on
    # disk for partitions it will not get back: dropped after the delay from its start, with
    # no revocation to start the clock.
    other = {**env, "DELTAWATCH_DIFFER_STATE_DIR": ""}
    launch(processes, other, "tx-other", tmp_path / "2.log").wait_ready()
    back = start(processes, env, tmp_path / "3.log", DELTAWATCH_DIFFER_STATE_CLEANUP_DELAY_S="2")
    wait_until(lambda: 0 < back.gauge("deltawatch_differ_assigned_partitions") < 3, 60, "a share")
    kept = back.gauge("deltawatch_differ_assigned_partitions")
    wait_until(
        lambda: back.gauge("deltawatch_differ_local_state_partitions") == kept,
        30,
        "the state of the partitions it did not get back dropped",
    )
    assert '"revoked"' not in (tmp_path / "3.log").read_text()
    assert back.terminate()[0] == 0
    database = LocalStateDb(Path(env["DELTAWATCH_DIFFER_STATE_DIR"]) / "tx-local")
    assert len(database.stored_partitions()) == kept
    database.close()


def test_an_unusable_state_directory_stops_the_differ_with_one_line(
    env: dict[str, str], processes: list[DifferProcess], tmp_path: Path
) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory")
    log = tmp_path / "d.log"
    bad = {**env, "DELTAWATCH_DIFFER_STATE_DIR": str(occupied)}
    process = launch(processes, bad, "tx-bad", log)  # killed by the fixture if it hangs
    assert process.process is not None
    assert process.process.wait(timeout=60) == 2
    text = log.read_text()
    assert f"deltawatch-differ: cannot open local state at {occupied}/tx-bad" in text
    assert "Traceback" not in text
