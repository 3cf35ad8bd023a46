"""Callbacks against real HTTP servers (CONTRACT §6): payload, signature, throttling,
baseline, retries, DLQ, isolation of a hanging endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
from datetime import UTC, datetime, timedelta

import pytest

from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import HANG, CallbackSink, Reply
from tests.notifier.conftest import Commands, Deltas, NotifierProcess, pod, read_topic

pytestmark = pytest.mark.kafka

KEY = os.urandom(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_interval_zero_signed_payload_and_baseline(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), 0, metadata={"owner": "so"}, secret=SECRET)
    # Observed before the subscription existed: part of its baseline, never told.
    deltas.send("inst-1", created=[pod("old")], at=datetime.now(UTC) - timedelta(minutes=5))
    deltas.send("inst-1", created=[pod("web-0")])
    [first] = sink.wait_count(1)
    assert first.payload == {
        "instance-id": "inst-1",
        "subscription-name": "sub-1",
        "metadata": {"owner": "so"},
        "resource-changes": {"created": [pod("web-0")], "deleted": [], "modified": []},
    }
    assert first.headers["content-type"] == "application/json"
    # Standard Webhooks signature, checked with an independent HMAC computation.
    signed = f"{first.headers['webhook-id']}.{first.headers['webhook-timestamp']}.".encode()
    expected = base64.b64encode(hmac.new(KEY, signed + first.body, hashlib.sha256).digest())
    assert first.headers["webhook-signature"] == "v1," + expected.decode()
    assert abs(int(first.headers["webhook-timestamp"]) - first.received_at) < 5

    for phase in ("Pending", "Failed"):
        deltas.send("inst-1", modified=[pod("web-0", phase)])
        count = len(sink.requests) + 1
        requests = sink.wait_count(count)
        assert requests[-1].payload["resource-changes"]["modified"] == [pod("web-0", phase)]
    ids = [r.headers["webhook-id"] for r in sink.requests]
    assert len(set(ids)) == len(ids) == 3
    assert all(r.payload["resource-changes"]["created"] != [pod("old")] for r in sink.requests)


def test_interval_throttles_and_sends_the_net_change(
    notifier: NotifierProcess,
    commands: Commands,
    deltas: Deltas,
    sink: CallbackSink,
    settings: CommonSettings,
) -> None:
    interval = 2
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), interval)
    deltas.send("inst-1", created=[pod("a")])
    sink.wait_count(1)
    # Inside the window: a modified twice, b created then deleted, c deleted then re-created
    # with a new status.
    deltas.send("inst-1", modified=[pod("a", "P1")], created=[pod("b"), pod("c", "Old")])
    deltas.send("inst-1", modified=[pod("a", "P2")], deleted=[pod("b")])
    deltas.send("inst-1", deleted=[pod("c", "Old")])
    deltas.send("inst-1", created=[pod("c", "New")])
    requests = sink.wait_count(2)
    second = requests[1].payload["resource-changes"]
    # c was created inside the window too, so it is a creation (of its latest status).
    assert second == {"created": [pod("c", "New")], "deleted": [], "modified": [pod("a", "P2")]}
    deltas.send("inst-1", deleted=[pod("a", "P2")])
    requests = sink.wait_count(3)
    assert requests[2].payload["resource-changes"]["deleted"] == [pod("a", "P2")]
    gaps = [
        later.received_at - earlier.received_at for earlier, later in itertools.pairwise(requests)
    ]
    assert all(gap >= interval for gap in gaps), gaps
    notifier.wait_metric("deltawatch_notifier_coalesced_changes_total 4.0")
    state = read_topic(
        settings,
        settings.subscriptions_topic,
        until=lambda s: (s.get("inst-1/sub-1") or {}).get("last-notify-status") == 200,
    )
    assert state["inst-1/sub-1"]["last-notify-time"] > state["inst-1/sub-1"]["created-at"]


def test_503_with_retry_after_is_retried_with_the_same_webhook_id(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    notifier.start()
    sink.script(Reply(503, {"Retry-After": "1"}))
    commands.create("inst-1", "sub-1", sink.url(), 0)
    deltas.send("inst-1", created=[pod("a")])
    failed, delivered = sink.wait_count(2)
    assert (failed.answered, delivered.answered) == (503, 200)
    assert failed.headers["webhook-id"] == delivered.headers["webhook-id"]
    assert failed.body == delivered.body
    assert delivered.received_at - failed.received_at >= 0.95
    notifier.wait_metric(
        'deltawatch_notifier_delivery_attempts_total{result="5xx"} 1.0',
        'deltawatch_notifier_deliveries_total{outcome="delivered"} 1.0',
        "deltawatch_notifier_delivery_latency_seconds_count 1.0",
    )


def test_400_is_not_retried_and_goes_to_the_dlq(
    notifier: NotifierProcess,
    commands: Commands,
    deltas: Deltas,
    sink: CallbackSink,
    settings: CommonSettings,
) -> None:
    notifier.start()
    sink.answer_by_default(Reply(400))
    commands.create("inst-1", "sub-1", sink.url(), 0)
    deltas.send("inst-1", created=[pod("a")])
    [attempt] = sink.wait_count(1)
    dlq = read_topic(settings, settings.dlq_topic, until=lambda s: "inst-1/sub-1" in s)
    letter = dlq["inst-1/sub-1"]
    assert letter["attempts"] == 1
    assert letter["last-status"] == 400
    assert letter["webhook-id"] == attempt.headers["webhook-id"]
    assert letter["payload"] == attempt.payload
    assert set(letter) == {
        "instance-id",
        "subscription-name",
        "webhook-id",
        "payload",
        "attempts",
        "last-status",
        "last-error",
        "first-attempt-at",
        "last-attempt-at",
    }
    assert len(sink.requests) == 1
    # The subscription keeps working: the next change is a new notification.
    sink.answer_by_default(Reply(200))
    deltas.send("inst-1", created=[pod("b")])
    requests = sink.wait_count(2)
    assert requests[1].payload["resource-changes"]["created"] == [pod("b")]


def test_dlq_after_the_last_attempt(
    notifier: NotifierProcess,
    commands: Commands,
    deltas: Deltas,
    sink: CallbackSink,
    settings: CommonSettings,
) -> None:
    notifier.start(DELTAWATCH_DELIVERY_MAX_ATTEMPTS="3")
    sink.answer_by_default(Reply(500))
    commands.create("inst-1", "sub-1", sink.url(), 0)
    deltas.send("inst-1", created=[pod("a")])
    dlq = read_topic(settings, settings.dlq_topic, until=lambda s: "inst-1/sub-1" in s)
    letter = dlq["inst-1/sub-1"]
    assert letter["attempts"] == 3
    assert letter["last-status"] == 500
    assert "after 3 attempts" in letter["last-error"]
    assert letter["first-attempt-at"] < letter["last-attempt-at"]
    assert len(sink.requests) == 3
    assert len({r.headers["webhook-id"] for r in sink.requests}) == 1
    notifier.wait_metric("deltawatch_notifier_dlq_total 1.0")


def test_a_hanging_endpoint_does_not_delay_another_subscription(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    notifier.start(DELTAWATCH_CALLBACK_TIMEOUT_S="30")
    with CallbackSink(default=Reply(HANG)) as hanging:
        commands.create("inst-1", "stuck", hanging.url(), 0)
        commands.create("inst-1", "fine", sink.url(), 0)
        deltas.send("inst-1", created=[pod("a")])
        hanging.wait_count(1)
        # The other subscription was told of a too (its POST may land after the hanging one's).
        [told_a] = sink.wait_count(1)
        assert told_a.payload["resource-changes"]["created"] == [pod("a")]
        for name in ("b", "c"):
            deltas.send("inst-1", created=[pod(name)])
            requests = sink.wait_count(len(sink.requests) + 1, timeout_s=5)
            assert requests[-1].payload["resource-changes"]["created"] == [pod(name)]
        assert len(hanging.requests) == 1


def test_undecodable_delta_is_skipped_and_the_next_one_flows(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), 0)
    deltas.send_raw("inst-1", b"\x00garbage", headers=[("ce_specversion", b"1.0")])
    deltas.send_raw("inst-1", b"no headers at all")
    deltas.send("inst-1", created=[pod("a")])
    [request] = sink.wait_count(1)
    assert request.payload["resource-changes"]["created"] == [pod("a")]
    notifier.wait_metric('deltawatch_notifier_deltas_total{outcome="undecodable"} 2.0')


def test_ignore_fields_alone_do_not_notify(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    notifier.start()
    commands.create(
        "inst-1", "sub-1", sink.url(), 0, **{"ignore-fields": ["metadata.resourceVersion"]}
    )

    def versioned(phase: str, version: str) -> dict[str, object]:
        entry = pod("a", phase)
        entry["status"]["metadata"]["resourceVersion"] = version  # type: ignore[index]
        return entry

    deltas.send("inst-1", created=[versioned("Running", "1")])
    sink.wait_count(1)
    deltas.send("inst-1", modified=[versioned("Running", "2")])  # ignored-only change
    deltas.send("inst-1", modified=[versioned("Failed", "3")])
    requests = sink.wait_count(2)
    assert requests[1].payload["resource-changes"]["modified"] == [versioned("Failed", "3")]
    notifier.wait_metric(
        'deltawatch_notifier_deltas_total{outcome="routed"} 2.0',
        'deltawatch_notifier_deltas_total{outcome="filtered"} 1.0',
    )
    assert len(sink.requests) == 2
