"""``deltawatch subscription create|update``: the filter options become the command's fields."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from deltawatch_tools import subscription_cli
from deltawatch_tools.cli import app


def sent_subscription(monkeypatch: pytest.MonkeyPatch, *options: str) -> Any:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(subscription_cli, "run_command", lambda command, _: sent.append(command))
    base = ["subscription", "update", "-i", "inst-1", "-n", "s", "--url", "http://h/cb"]
    result = CliRunner().invoke(app, [*base, *options])
    assert result.exit_code == 0, result.output
    [command] = sent
    assert command["action"] == "update"
    return command["subscription"]


def test_filter_options_become_the_subscription_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    subscription = sent_subscription(
        monkeypatch,
        "--change-types",
        "created, deleted",
        "--kind",
        "v1/Pod",
        "--kind",
        "apps/v1/Deployment",
        "--namespace",
        "prod",
        "--exclude-namespace",
        "kube-system",
        "--include-patch",
    )
    assert subscription["change-types"] == ["created", "deleted"]
    assert subscription["kinds"] == [
        {"group": "", "version": "v1", "kind": "Pod"},
        {"group": "apps", "version": "v1", "kind": "Deployment"},
    ]
    assert subscription["namespaces"] == ["prod"]
    assert subscription["exclude-namespaces"] == ["kube-system"]
    assert subscription["include-patch"] is True


def test_without_filter_options_the_command_has_no_filter_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subscription = sent_subscription(monkeypatch)
    assert set(subscription) == {"name", "callback-url", "min-notify-interval", "metadata"}


def test_a_kind_not_spelt_group_version_kind_is_a_usage_error() -> None:
    base = ["subscription", "create", "-i", "i", "-n", "s", "--url", "http://h/cb"]
    result = CliRunner().invoke(app, [*base, "--kind", "Pod"])
    assert result.exit_code == 2
    assert "--kind 'Pod'" in result.output
