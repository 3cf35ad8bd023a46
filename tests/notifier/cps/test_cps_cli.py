"""``deltawatch cps …`` typed as a user would (the installed command, a subprocess) against the
real broker and a running notifier: the command's result is what the CLI prints, and the CPS
topic then carries events for the subscribed anchor only."""

from __future__ import annotations

import json

import pytest

from deltawatch.settings import CommonSettings
from tests.fixtures.cli import run_cli, user_env
from tests.notifier.conftest import Deltas, NotifierProcess, pod
from tests.notifier.cps.conftest import of_anchor, read_cps, wait_cps

pytestmark = pytest.mark.kafka


def test_cps_subscribe_list_unsubscribe_through_the_cli(
    notifier: NotifierProcess,
    notifier_env: dict[str, str],
    deltas: Deltas,
    settings: CommonSettings,
) -> None:
    notifier.start()
    env = user_env(notifier_env)
    said = f"kafka: {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"

    subscribed = run_cli("cps", "subscribe", "--dataspace", "ds1", "--anchor", "inst-1", env=env)
    assert (subscribed.returncode, subscribed.stderr_lines) == (0, [said])
    result = json.loads(subscribed.stdout)
    assert (result["status"], result["action"]) == ("accepted", "subscribe-delta-notification")

    deltas.send("inst-2", created=[pod("other")])
    deltas.send("inst-1", created=[pod("web-0")])
    records = wait_cps(settings, lambda r: len(of_anchor(r, "inst-1")) >= 1)
    notifier.wait_metric('deltawatch_notifier_deltas_total{outcome="no-subscriber"} 1.0')
    assert [r.key for r in read_cps(settings)] == ["ds1:inst-1"]
    assert records[0].data["operation"] == "CREATE"
    assert records[0].data["data"][0]["payload"]["metadata"]["name"] == "web-0"

    listed = run_cli("cps", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [state] = json.loads(listed.stdout)
    assert (state["dataspace"], state["all-anchors"], state["anchors"]) == (
        "ds1",
        False,
        ["inst-1"],
    )
    table = run_cli("cps", "list", env=env)
    assert table.stdout.splitlines() == ["dataspace  anchors", "ds1        inst-1"]

    unsubscribed = run_cli("cps", "unsubscribe", "-d", "ds1", "-a", "inst-1", env=env)
    assert unsubscribed.returncode == 0, unsubscribed.stderr
    assert json.loads(unsubscribed.stdout)["status"] == "accepted"
    assert json.loads(run_cli("cps", "list", "--json", env=env).stdout) == []


def test_a_rejected_cps_command_prints_its_result_and_exits_1(
    notifier: NotifierProcess, notifier_env: dict[str, str]
) -> None:
    notifier.start()
    rejected = run_cli("cps", "subscribe", "--dataspace", "a/b", env=user_env(notifier_env))
    assert rejected.returncode == 1
    result = json.loads(rejected.stdout)
    assert result["status"] == "rejected"
    assert result["error"]["code"]
