"""The watcher pair's settings: defaults, and one line naming the variable on a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltawatch import settings as settings_module
from deltawatch.settings import SettingsError, WatcherSettings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DELTAWATCH_CLUSTER",
        "DELTAWATCH_LEADER_ELECTION",
        "DELTAWATCH_LEASE_NAME",
        "DELTAWATCH_LEASE_NAMESPACE",
        "DELTAWATCH_LEASE_DURATION_S",
        "DELTAWATCH_LEASE_RENEW_DEADLINE_S",
        "DELTAWATCH_LEASE_RETRY_PERIOD_S",
        "DELTAWATCH_WATCHER_IDENTITY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DELTAWATCH_CLUSTER", "east")
    monkeypatch.setattr(settings_module, "IN_CLUSTER_NAMESPACE_FILE", tmp_path / "absent")
    settings = load_settings(WatcherSettings)
    assert settings.leader_election is False
    assert settings.lease_name == "deltawatch-watcher-east"
    assert settings.lease_namespace == "default"  # not in a pod
    assert (settings.lease_duration_s, settings.lease_renew_deadline_s) == (15, 10.0)
    assert settings.lease_retry_period_s == 2.0
    other = load_settings(WatcherSettings)
    assert settings.watcher_identity != other.watcher_identity  # unique per process start


def test_in_a_pod_the_lease_lives_in_the_pods_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("deltawatch\n")
    monkeypatch.setattr(settings_module, "IN_CLUSTER_NAMESPACE_FILE", namespace_file)
    assert load_settings(WatcherSettings).lease_namespace == "deltawatch"
    monkeypatch.setenv("DELTAWATCH_LEASE_NAMESPACE", "elsewhere")
    assert load_settings(WatcherSettings).lease_namespace == "elsewhere"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DELTAWATCH_LEASE_RENEW_DEADLINE_S": "15"}, "DELTAWATCH_LEASE_RENEW_DEADLINE_S"),
        ({"DELTAWATCH_LEASE_RETRY_PERIOD_S": "10"}, "DELTAWATCH_LEASE_RETRY_PERIOD_S"),
        ({"DELTAWATCH_LEASE_DURATION_S": "0"}, "DELTAWATCH_LEASE_DURATION_S"),
        ({"DELTAWATCH_LEASE_NAMESPACE": "Not_A_Namespace"}, "DELTAWATCH_LEASE_NAMESPACE"),
        (
            {"DELTAWATCH_LEADER_ELECTION": "true", "DELTAWATCH_CLUSTER": "East_1"},
            "DELTAWATCH_LEASE_NAME",
        ),
        ({"DELTAWATCH_LEADER_ELECTION": "maybe"}, "DELTAWATCH_LEADER_ELECTION"),
    ],
)
def test_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings(WatcherSettings)
    message = str(error.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
