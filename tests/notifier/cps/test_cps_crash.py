"""Exactly-once CPS events across a SIGKILL (CONTRACT §7, issue 6).

The notifier is killed while deltas stream in, then restarted. A ``read_committed`` consumer
of the CPS topic must see every change the deltas imply exactly once: each created pod in
exactly one ADD, no event id twice, one CREATE then only UPDATEs per anchor.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from deltawatch.settings import CommonSettings
from tests.notifier.conftest import Commands, Deltas, NotifierProcess, pod
from tests.notifier.cps.conftest import CpsRecord, of_anchor, read_cps, wait_cps

pytestmark = pytest.mark.kafka

PODS = 150
ANCHORS = ("inst-1", "inst-2")


def _added(records: list[CpsRecord]) -> Counter[str]:
    return Counter(
        change["payload"]["metadata"]["name"]
        for record in records
        for change in record.data["data"]
        if change["action"] == "ADD"
    )


def _complete(records: list[CpsRecord]) -> bool:
    return all(len(_added(of_anchor(records, a))) == PODS for a in ANCHORS)


def _events_produced(notifier: NotifierProcess) -> float:
    for line in notifier.metrics().splitlines():
        if line.startswith("deltawatch_notifier_cps_events_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigkill_mid_stream_loses_and_duplicates_no_cps_event(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, settings: CommonSettings
) -> None:
    notifier.start()
    result = commands.send(
        {"action": "subscribe-delta-notification", "dataspace": "ds1", "anchors": list(ANCHORS)}
    )
    assert result["status"] == "accepted", result

    def stream() -> None:
        # A steady stream (about 100 deltas/s), so the notifier commits many transactions.
        for i in range(PODS):
            for anchor in ANCHORS:
                deltas.send(anchor, created=[pod(f"p{i:03d}")])
            time.sleep(0.02)

    producer = threading.Thread(target=stream)
    producer.start()
    # Kill once some, not all, events are committed: the stream is still flowing.
    deadline = time.monotonic() + 30
    while _events_produced(notifier) < 10:
        assert time.monotonic() < deadline, notifier.logs()
        time.sleep(0.05)
    notifier.kill()
    assert producer.is_alive(), "the stream ended before the kill: nothing was mid-stream"
    producer.join(timeout=60)
    notifier.start()
    records = wait_cps(settings, _complete, timeout_s=60)

    ids = Counter(record.id for record in records)
    assert [i for i, n in ids.items() if n > 1] == []
    for anchor in ANCHORS:
        events = of_anchor(records, anchor)
        added = _added(events)
        assert set(added) == {f"p{i:03d}" for i in range(PODS)}
        assert [name for name, n in added.items() if n > 1] == []
        operations = [event.data["operation"] for event in events]
        assert operations[0] == "CREATE"
        assert set(operations[1:]) <= {"UPDATE"}
        assert all(change["action"] == "ADD" for e in events for change in e.data["data"])
    # Nothing more comes later (a replay would show up as extra events).
    notifier.wait_metric('deltawatch_notifier_deltas_total{outcome="routed"}')
    assert len(read_cps(settings)) == len(records)
