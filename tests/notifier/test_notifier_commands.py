"""Commands against the real broker: every path answered once, state on the compacted topic."""

from __future__ import annotations

import pytest

from deltawatch.settings import CommonSettings
from tests.notifier.conftest import Commands, NotifierProcess, read_topic

pytestmark = pytest.mark.kafka


def test_every_command_path_and_rejection(
    notifier: NotifierProcess, commands: Commands, settings: CommonSettings
) -> None:
    notifier.start()
    url = "http://127.0.0.1:9/notify"

    created = commands.create("inst-1", "sub-1", url, 10, metadata={"owner": "so"})
    assert created["action"] == "create"
    assert created["instance-id"] == "inst-1"
    assert created["subscription-name"] == "sub-1"
    assert created["error"] is None
    assert created["processed-at"].endswith("Z")

    again = commands.send(
        {
            "action": "create",
            "instance-id": "inst-1",
            "subscription": {"name": "sub-1", "callback-url": url},
        }
    )
    assert again["status"] == "rejected"
    assert again["error"]["code"] == "already-exists"

    missing = commands.send(
        {
            "action": "update",
            "instance-id": "inst-1",
            "subscription": {"name": "nope", "callback-url": url},
        }
    )
    assert missing["error"]["code"] == "not-found"

    bad_interval = commands.send(
        {
            "action": "create",
            "instance-id": "inst-1",
            "subscription": {"name": "s2", "callback-url": url, "min-notify-interval": -1},
        }
    )
    assert bad_interval["error"]["code"] == "invalid-interval"

    bad_url = commands.send(
        {
            "action": "create",
            "instance-id": "inst-1",
            "subscription": {"name": "s2", "callback-url": "file:///etc/passwd"},
        }
    )
    assert bad_url["error"]["code"] == "invalid-url"

    unknown = commands.send({"action": "frobnicate", "instance-id": "inst-1"})
    assert unknown["error"]["code"] == "unknown-action"
    assert unknown["action"] == "frobnicate"

    malformed = commands.send_raw(b"{not json", key="inst-1")
    assert malformed["status"] == "rejected"
    assert malformed["error"]["code"] == "malformed-json"
    topic, partition, offset = malformed["command-id"].rsplit("/", 2)
    assert topic == settings.commands_topic
    assert int(partition) >= 0
    assert int(offset) >= 0

    updated = commands.send(
        {
            "action": "update",
            "instance-id": "inst-1",
            "subscription": {"name": "sub-1", "callback-url": url, "min-notify-interval": 0},
        }
    )
    assert updated["status"] == "accepted"
    assert updated["subscription"]["min-notify-interval"] == 0

    cps = commands.send(
        {"action": "subscribe-delta-notification", "dataspace": "ds1", "anchors": ["inst-1"]}
    )
    assert cps["status"] == "accepted"

    state = read_topic(
        settings,
        settings.subscriptions_topic,
        until=lambda s: "inst-1/sub-1" in s and "cps/ds1" in s,
    )
    sub = state["inst-1/sub-1"]
    assert sub["min-notify-interval"] == 0
    assert sub["metadata"] == {}
    assert sub["instance-id"] == "inst-1"
    assert sub["last-notify-status"] == 0
    assert state["cps/ds1"]["anchors"] == ["inst-1"]

    deleted = commands.send(
        {"action": "delete", "instance-id": "inst-1", "subscription-name": "sub-1"}
    )
    assert deleted["status"] == "accepted"
    read_topic(
        settings, settings.subscriptions_topic, until=lambda s: s.get("inst-1/sub-1", 1) is None
    )
    gone = commands.send(
        {"action": "delete", "instance-id": "inst-1", "subscription-name": "sub-1"}
    )
    assert gone["error"]["code"] == "not-found"

    notifier.wait_metric(
        'deltawatch_notifier_commands_total{action="create",result="accepted"} 1.0',
        'result="already-exists"',
    )
    assert notifier.stop() == 0


def test_callback_in_denied_network_is_rejected(
    notifier: NotifierProcess, commands: Commands
) -> None:
    notifier.start(DELTAWATCH_CALLBACK_DENY_NETWORKS="127.0.0.0/8,169.254.0.0/16")
    result = commands.send(
        {
            "action": "create",
            "instance-id": "inst-1",
            "subscription": {"name": "s", "callback-url": "http://localhost:8080/x"},
        }
    )
    assert result["error"]["code"] == "forbidden-network"
    outside = commands.send(
        {
            "action": "create",
            "instance-id": "inst-1",
            "subscription": {"name": "s", "callback-url": "http://169.254.169.254/latest"},
        }
    )
    assert outside["error"]["code"] == "forbidden-network"
