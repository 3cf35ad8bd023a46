"""Restore and crash safety (CONTRACT §1, §6): nothing consumed is lost across restarts."""

from __future__ import annotations

import pytest

from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import HANG, CallbackSink, Reply
from tests.notifier.conftest import Commands, Deltas, NotifierProcess, pod, read_topic

pytestmark = pytest.mark.kafka


def test_restore_after_restart(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), 0, metadata={"k": "v"})
    deltas.send("inst-1", created=[pod("a")])
    sink.wait_count(1)
    assert notifier.stop() == 0
    # While the notifier is down the instance changes; the restarted one must tell it.
    deltas.send("inst-1", modified=[pod("a", "Failed")])
    notifier.start()
    requests = sink.wait_count(2)
    assert requests[1].payload["resource-changes"]["modified"] == [pod("a", "Failed")]
    assert requests[1].payload["metadata"] == {"k": "v"}
    # The restored table knows the subscription (no re-create, no duplicate answer).
    again = commands.send(
        {
            "action": "create",
            "instance-id": "inst-1",
            "subscription": {"name": "sub-1", "callback-url": sink.url()},
        }
    )
    assert again["error"]["code"] == "already-exists"
    notifier.wait_metric("deltawatch_notifier_subscriptions 1.0")


def test_pending_throttled_change_survives_a_restart(
    notifier: NotifierProcess, commands: Commands, deltas: Deltas, sink: CallbackSink
) -> None:
    interval = 3
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), interval)
    deltas.send("inst-1", created=[pod("a")])
    [first] = sink.wait_count(1)
    deltas.send("inst-1", modified=[pod("a", "P1")])  # held by the closed window
    notifier.wait_metric('deltawatch_notifier_deltas_total{outcome="routed"} 2.0')
    assert notifier.stop() == 0
    notifier.start()
    requests = sink.wait_count(2)
    assert requests[1].payload["resource-changes"]["modified"] == [pod("a", "P1")]
    assert requests[1].received_at - first.received_at >= interval


def test_sigkill_between_consume_and_delivery(
    notifier: NotifierProcess,
    commands: Commands,
    deltas: Deltas,
    sink: CallbackSink,
    settings: CommonSettings,
) -> None:
    """The delta is consumed and its notification out; the process dies before any 2xx."""
    notifier.start(DELTAWATCH_CALLBACK_TIMEOUT_S="30")
    commands.create("inst-1", "sub-1", sink.url(), 0)
    sink.script(Reply(HANG))
    deltas.send("inst-1", created=[pod("a")])
    [held] = sink.wait_count(1)
    notifier.kill()
    sink.release_hanging()
    notifier.start()
    requests = sink.wait_for(lambda rs: any(r.answered == 200 for r in rs))
    assert {r.headers["webhook-id"] for r in requests} == {held.headers["webhook-id"]}
    assert {r.body for r in requests} == {held.body}
    assert held.payload["resource-changes"]["created"] == [pod("a")]
    # Delivered once is enough: a later change is a new notification, not a replay.
    deltas.send("inst-1", created=[pod("b")])
    later = sink.wait_count(len(requests) + 1)
    assert later[-1].payload["resource-changes"]["created"] == [pod("b")]
    assert later[-1].headers["webhook-id"] != held.headers["webhook-id"]
    state = read_topic(
        settings,
        settings.subscriptions_topic,
        until=lambda s: (s.get("inst-1/sub-1") or {}).get("last-notify-status") == 200,
    )
    assert state["inst-1/sub-1"]["signed"] is False


def test_delivery_time_network_fence_dead_letters(
    notifier: NotifierProcess,
    commands: Commands,
    deltas: Deltas,
    sink: CallbackSink,
    settings: CommonSettings,
) -> None:
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), 0)
    assert notifier.stop() == 0
    # The fence changes (or the name now resolves elsewhere): refused at delivery time.
    notifier.start(DELTAWATCH_CALLBACK_DENY_NETWORKS="127.0.0.0/8")
    deltas.send("inst-1", created=[pod("a")])
    dlq = read_topic(settings, settings.dlq_topic, until=lambda s: "inst-1/sub-1" in s)
    assert "127.0.0.1 is in denied network 127.0.0.0/8" in dlq["inst-1/sub-1"]["last-error"]
    assert dlq["inst-1/sub-1"]["last-status"] == 0
    assert sink.requests == []


def test_a_restart_on_other_topics_with_the_old_group_stops_with_one_line(
    notifier: NotifierProcess, notifier_env: dict[str, str]
) -> None:
    """A rejoining static member is handed its old assignment, even for other topics: the
    notifier must say so rather than own the wrong partitions in silence."""
    notifier.start()
    assert notifier.stop() == 0
    moved = notifier_env["DELTAWATCH_DELTAS_TOPIC"] + ".moved"
    with pytest.raises(AssertionError, match="notifier exited 2"):
        notifier.start(DELTAWATCH_DELTAS_TOPIC=moved)
    logs = notifier.logs()
    assert "assignment of other topics" in logs
    assert notifier_env["DELTAWATCH_DELTAS_TOPIC"] in logs
    assert "DELTAWATCH_NOTIFIER_GROUP_ID" in logs
    assert "Traceback" not in logs
