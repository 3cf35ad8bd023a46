"""The watcher pair's settings: defaults, and one line naming the variable on a bad value."""

from __future__ import annotations

import pytest

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


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAWATCH_CLUSTER", "east")
    settings = load_settings(WatcherSettings)
    assert settings.leader_election is False
    assert settings.lease_name == "deltawatch-watcher-east"
    assert settings.lease_namespace == "default"  # no in-cluster namespace file here
    assert (settings.lease_duration_s, settings.lease_renew_deadline_s) == (15, 10.0)
    assert settings.lease_retry_period_s == 2.0
    other = load_settings(WatcherSettings)
    assert settings.watcher_identity != other.watcher_identity  # unique per process start


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
