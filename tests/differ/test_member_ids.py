"""Member ids of real differ processes: restarts resume at once, live peers are never fenced.

"Another host" is simulated as a second host would look: its own ``HOSTNAME`` and its own
temporary directory (where the id locks live).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.differ.harness import (
    DifferProcess,
    EventFeed,
    TopicReader,
    changes,
    create_pipeline_topics,
    differ_env,
    launch,
    pod,
    wait_until,
)

pytestmark = pytest.mark.kafka

ASSIGNED = "deltawatch_differ_assigned_partitions"


@pytest.fixture
def env(topic_env: dict[str, str]) -> dict[str, str]:
    env = differ_env(topic_env)
    create_pipeline_topics(env)
    return env


def on_host(env: dict[str, str], tmp_path: Path, host: str, **extra: str) -> dict[str, str]:
    directory = tmp_path / host
    directory.mkdir(exist_ok=True)
    return {**env, "HOSTNAME": host, "TMPDIR": str(directory), **extra}


def two_hosts(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``host-a`` and ``host-b``, with 6 s sessions so that a dead member leaves quickly."""
    short_sessions = json.dumps({"session.timeout.ms": 6000})
    return (
        on_host(env, tmp_path, "host-a", DELTAWATCH_KAFKA_CONFIG=short_sessions),
        on_host(env, tmp_path, "host-b", DELTAWATCH_KAFKA_CONFIG=short_sessions),
    )


def claimed_id(process: DifferProcess) -> str:
    for line in process.log_text().splitlines():
        if line.startswith("{") and '"differ starting"' in line:
            return str(json.loads(line)["transactional_id"])
    raise AssertionError(f"no start line in {process.log_path}")


def exit_line(process: DifferProcess, timeout_s: float) -> tuple[int, str]:
    """The exit code of a process that refused to start, and its one line of explanation."""
    assert process.process is not None
    code = process.process.wait(timeout=timeout_s)
    ours = [
        line for line in process.log_text().splitlines() if line.startswith("deltawatch-differ:")
    ]
    assert len(ours) == 1, process.log_text()
    assert "Traceback" not in process.log_text()
    return code, ours[0]


def still_works(process: DifferProcess, feed: EventFeed, deltas: TopicReader, name: str) -> None:
    """Alive, ready, and turns a new event into a delta (so it was not fenced)."""
    feed.watch("ADDED", pod(name, f"inst-{name}"))
    feed.flush()
    deltas.wait_for(
        lambda: any(name in changes(d)["created"] for d in deltas.deltas()), f"delta of {name}"
    )
    assert process.alive()
    assert process.ready()


def test_two_replicas_on_one_host_with_default_ids_share_the_partitions(
    env: dict[str, str],
    tmp_path: Path,
    processes: list[DifferProcess],
    deltas: TopicReader,
) -> None:
    a = launch(processes, env, None, tmp_path / "a.log")
    b = launch(processes, env, None, tmp_path / "b.log")
    a.wait_ready()
    b.wait_ready()
    first, second = sorted([claimed_id(a), claimed_id(b)])
    assert second == f"{first}-1"  # the host's next slot, not a clash
    partitions = int(env["DELTAWATCH_PARTITIONS"])
    wait_until(
        lambda: (
            a.gauge(ASSIGNED) + b.gauge(ASSIGNED) == partitions
            and a.gauge(ASSIGNED) > 0
            and b.gauge(ASSIGNED) > 0
        ),
        30,
        "the partitions split between both",
    )
    feed = EventFeed(env)
    names = [f"p{i}" for i in range(24)]
    for name in names:
        feed.watch("ADDED", pod(name, f"inst-{name}"))
    feed.flush()
    deltas.wait_for(
        lambda: sorted(n for d in deltas.deltas() for n in changes(d)["created"]) == sorted(names),
        "a delta for every instance",
    )
    assert a.alive()
    assert b.alive()


def test_a_second_process_with_the_same_id_on_this_host_refuses_to_start(
    env: dict[str, str],
    tmp_path: Path,
    processes: list[DifferProcess],
    deltas: TopicReader,
) -> None:
    running = launch(processes, env, "tx-taken", tmp_path / "running.log")
    running.wait_ready()
    newcomer = launch(processes, env, "tx-taken", tmp_path / "newcomer.log")
    code, line = exit_line(newcomer, 30)
    assert code == 2
    assert "DELTAWATCH_TRANSACTIONAL_ID=tx-taken is in use by another process on this host" in line
    assert str(running.process.pid if running.process else "") in line
    still_works(running, EventFeed(env), deltas, "after-newcomer")


def test_a_live_member_with_the_same_id_on_another_host_is_not_fenced(
    env: dict[str, str],
    tmp_path: Path,
    processes: list[DifferProcess],
    deltas: TopicReader,
) -> None:
    host_a, host_b = two_hosts(env, tmp_path)
    running = launch(processes, host_a, "tx-shared", tmp_path / "running.log")
    running.wait_ready()
    newcomer = launch(processes, host_b, "tx-shared", tmp_path / "newcomer.log")
    code, line = exit_line(newcomer, 60)
    assert code == 2
    assert "member id tx-shared is held by a live member" in line
    assert "host-a" in line
    still_works(running, EventFeed(env), deltas, "after-peer")


def test_a_dead_member_on_another_host_is_taken_over_after_its_session(
    env: dict[str, str],
    tmp_path: Path,
    processes: list[DifferProcess],
    deltas: TopicReader,
) -> None:
    """A node lost with its pod: the replacement elsewhere waits one session, then takes over."""
    host_a, host_b = two_hosts(env, tmp_path)
    lost = launch(processes, host_a, "tx-moved", tmp_path / "lost.log")
    lost.wait_ready()
    lost.kill()
    replacement = launch(processes, host_b, "tx-moved", tmp_path / "replacement.log")
    replacement.wait_ready(timeout_s=60)
    assert "held on another host" in replacement.log_text()
    still_works(replacement, EventFeed(env), deltas, "after-move")


def test_a_restarted_differ_resumes_without_waiting_for_its_old_session(
    env: dict[str, str],
    tmp_path: Path,
    processes: list[DifferProcess],
    deltas: TopicReader,
) -> None:
    """Killed and started again on the same host with default ids: it is the same static member.

    The group's session timeout is set to 45 s (librdkafka's default): a restart that had to
    wait for the dead member's session would take that long before its partitions came back.
    """
    slow_sessions = {"DELTAWATCH_KAFKA_CONFIG": json.dumps({"session.timeout.ms": 45000})}
    feed = EventFeed(env)
    first = launch(processes, {**env, **slow_sessions}, None, tmp_path / "first.log")
    first.wait_ready()
    still_works(first, feed, deltas, "before-crash")
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    feed.watch("ADDED", pod("during-outage", "inst-during-outage"))
    feed.flush()
    restarted_at = time.monotonic()
    second = launch(processes, {**env, **slow_sessions}, None, tmp_path / "second.log")
    deltas.wait_for(
        lambda: any("during-outage" in changes(d)["created"] for d in deltas.deltas()),
        "the change made during the outage",
        timeout_s=60,
    )
    took = time.monotonic() - restarted_at
    assert claimed_id(second) == claimed_id(first)
    assert took < 20, f"{took:.1f}s: the restart waited for the old member's 45 s session"


def test_a_restart_on_other_topics_with_the_old_group_stops_with_one_line(
    env: dict[str, str], processes: list[DifferProcess], tmp_path: Path
) -> None:
    """The broker hands a rejoining static member its old assignment, even for another
    subscription: the differ must say so rather than own the wrong partitions in silence."""
    first = launch(processes, env, "tx-moved", tmp_path / "1.log")
    first.wait_ready()
    assert first.terminate()[0] == 0
    moved = {
        **env,
        "DELTAWATCH_RESOURCE_EVENTS_TOPIC": env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"] + ".moved",
        "DELTAWATCH_DELTAS_TOPIC": env["DELTAWATCH_DELTAS_TOPIC"] + ".moved",
    }
    create_pipeline_topics(moved)
    second = launch(processes, moved, "tx-moved", tmp_path / "2.log")
    assert second.process is not None
    assert second.process.wait(timeout=60) == 2
    [line] = [
        json.loads(text)
        for text in second.log_text().splitlines()
        if text.startswith("{") and "assignment of other topics" in text
    ]
    assert env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"] in line["error"]
    assert "DELTAWATCH_DIFFER_GROUP_ID" in line["error"]
    assert "Traceback" not in second.log_text()
