"""``deltawatch subscription …`` against the real broker and a running notifier."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink
from deltawatch_tools.cli import app
from tests.notifier.conftest import Deltas, NotifierProcess, pod

pytestmark = pytest.mark.kafka


def test_create_list_get_update_delete(
    notifier: NotifierProcess, settings: CommonSettings, sink: CallbackSink, deltas: Deltas
) -> None:
    notifier.start()
    runner = CliRunner()
    created = runner.invoke(
        app,
        [
            "subscription",
            "create",
            "-i",
            "inst-1",
            "-n",
            "sub-1",
            "--url",
            sink.url(),
            "--metadata",
            '{"owner": "ops"}',
            "--extra-resource-type",
            "apps/v1/Deployment",
        ],
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["status"] == "accepted"

    duplicate = runner.invoke(
        app, ["subscription", "create", "-i", "inst-1", "-n", "sub-1", "--url", sink.url()]
    )
    assert duplicate.exit_code == 1
    assert json.loads(duplicate.stdout)["error"]["code"] == "already-exists"

    deltas.send("inst-1", created=[pod("a")])
    sink.wait_count(1)
    shown = {}
    for _ in range(100):  # the notify bookkeeping is written just after the 2xx
        got = runner.invoke(app, ["subscription", "get", "-i", "inst-1", "-n", "sub-1"])
        assert got.exit_code == 0, got.output
        shown = json.loads(got.stdout)
        if shown["last-notify-status"] == 200:
            break
    assert shown["last-notify-status"] == 200
    assert shown["extra-resource-types"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}
    ]

    listed = runner.invoke(app, ["subscription", "list", "-i", "inst-1"])
    assert listed.exit_code == 0
    assert "last-notify-status" in listed.output
    assert "sub-1" in listed.output
    assert " 200 " in listed.output

    updated = runner.invoke(
        app,
        [
            "subscription",
            "update",
            "-i",
            "inst-1",
            "-n",
            "sub-1",
            "--url",
            sink.url(),
            "--interval",
            "5",
        ],
    )
    assert updated.exit_code == 0, updated.output

    deleted = runner.invoke(app, ["subscription", "delete", "-i", "inst-1", "-n", "sub-1"])
    assert deleted.exit_code == 0, deleted.output
    missing = runner.invoke(app, ["subscription", "get", "-i", "inst-1", "-n", "sub-1"])
    assert missing.exit_code == 1
    assert json.loads(runner.invoke(app, ["subscription", "list", "--json"]).stdout) == []
