"""The differ process drops what a deposed watcher leader sends (the fence by leader epoch).

Records are produced as the watchers of an active/standby pair write them, with their
``leader_epoch`` and ``leader_lease``; the deltas are read back ``read_committed``. A record of
an older epoch after a newer one, on the same partition, for the same cluster and Lease, must
change nothing — before and after a restart of the differ (the highest epoch seen is restored
from the changelog). Epochs of another cluster, or of another Lease of the same cluster (a
second pair splitting it), are unrelated. Records without an epoch (no leader election, or a
watcher of the release before it, written with the older schema) are always applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deltawatch.avro_serde import AvroSchema, AvroSerde, load_schema
from tests.differ.harness import (
    DifferProcess,
    EventFeed,
    TopicReader,
    create_pipeline_topics,
    differ_env,
    pod,
)

pytestmark = pytest.mark.kafka

FENCED = "deltawatch_differ_fenced_events_total"


@pytest.fixture
def env(topic_env: dict[str, str]) -> dict[str, str]:
    # One record per transaction: a stale record would show as its own delta, not be netted away.
    env = differ_env(topic_env, DELTAWATCH_BATCH_MAX="1")
    create_pipeline_topics(env)
    return env


def _record(feed: EventFeed, event_type: str, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    fields = {"namespace": meta["namespace"], "name": meta["name"], "object": body}
    return feed.record(event_type, instance_id="inst-1", **fields)


LEASES = {
    "east": "deltawatch/deltawatch-watcher-east",
    "west": "deltawatch/deltawatch-watcher-west",
}


def send(
    feed: EventFeed,
    event_type: str,
    body: dict[str, Any],
    epoch: int | None,
    cluster: str,
    lease: str | None = None,
) -> None:
    record = _record(feed, event_type, body)
    record["cluster"] = cluster
    record["leader_epoch"] = epoch
    record["leader_lease"] = lease or LEASES[cluster]
    feed.producer.produce(feed.topic, key=b"inst-1", value=feed.serde.encode(record))


def send_without_epoch_field(feed: EventFeed, body: dict[str, Any]) -> None:
    """As a watcher of the release before leader election writes it: the older schema."""
    raw = load_schema("resource-event.avsc")
    added = ("leader_epoch", "leader_lease")
    older = AvroSerde(
        AvroSchema(dict(raw, fields=[f for f in raw["fields"] if f["name"] not in added])),
        feed.topic,
    )
    record = _record(feed, "MODIFIED", body)
    record["cluster"] = "east"
    feed.producer.produce(feed.topic, key=b"inst-1", value=older.encode(record))


def phases(deltas: TopicReader, cluster: str) -> list[str]:
    out = []
    for delta in deltas.deltas("inst-1"):
        if delta.data["cluster"] != cluster:
            continue
        changes = delta.data["resource-changes"]
        out += [entry["status"]["status"]["phase"] for entry in changes["created"]]
        out += [entry["status"]["status"]["phase"] for entry in changes["modified"]]
    return out


@pytest.fixture
def start_differ(env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[DifferProcess] = []

    def start() -> DifferProcess:
        process = DifferProcess(env, "tx-fence", tmp_path / f"d{len(started)}.log")
        started.append(process)
        process.start().wait_ready()
        return process

    yield start
    for process in started:
        process.kill()


def test_a_lower_epoch_after_a_higher_one_is_dropped_across_a_restart(
    env: dict[str, str], start_differ: Any, deltas: TopicReader
) -> None:
    differ = start_differ()
    feed = EventFeed(env)
    send(feed, "ADDED", pod("web-0", "inst-1", phase="Running", rv="1"), 5, "east")
    send(feed, "MODIFIED", pod("web-0", "inst-1", phase="Failed", rv="2"), 4, "east")  # stale
    send(feed, "ADDED", pod("web-0", "inst-1", phase="Running", rv="1"), 1, "west")  # own lease
    send(feed, "MODIFIED", pod("web-0", "inst-1", phase="Succeeded", rv="3"), 5, "east")
    # A second pair of the same cluster (split by namespace), on its own Lease: its count is
    # lower, and it is not stale.
    shop = pod("shop-0", "inst-1", phase="Running", rv="7")
    send(feed, "ADDED", shop, 2, "east", lease="deltawatch/deltawatch-watcher-east-shop")
    feed.flush()
    deltas.wait_for(
        lambda: phases(deltas, "east") == ["Running", "Succeeded", "Running"], "east deltas"
    )
    deltas.wait_for(lambda: phases(deltas, "west") == ["Running"], "west delta")
    assert differ.gauge(FENCED) == 1
    assert "events of a deposed watcher leader dropped" in differ.log_text()

    code, _ = differ.terminate()
    assert code == 0
    differ = start_differ()  # the highest epoch seen comes back from the changelog
    send(feed, "MODIFIED", pod("web-0", "inst-1", phase="Failed", rv="4"), 4, "east")  # stale
    send_without_epoch_field(feed, pod("web-0", "inst-1", phase="Pending", rv="5"))
    send(feed, "MODIFIED", pod("web-0", "inst-1", phase="Running", rv="6"), 6, "east")
    feed.flush()
    deltas.wait_for(
        lambda: phases(deltas, "east") == ["Running", "Succeeded", "Running", "Pending", "Running"],
        "east deltas after the restart",
    )
    assert differ.gauge(FENCED) == 1
    assert "Failed" not in phases(deltas, "east")
    assert differ.gauge("deltawatch_differ_dead_letters_total") == 0
