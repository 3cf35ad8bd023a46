"""Bad configuration stops a worker with one line naming the variable (CONTRACT §2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deltawatch.resource_identity import GroupVersionKind
from deltawatch.settings import (
    DifferSettings,
    NotifierSettings,
    SettingsError,
    WatcherSettings,
    load_settings,
)

BAD_VALUES = [
    (WatcherSettings, "DELTAWATCH_PARTITIONS", "zero"),
    (WatcherSettings, "DELTAWATCH_PARTITIONS", "0"),
    (WatcherSettings, "DELTAWATCH_KAFKA_CONFIG", "{not json"),
    (WatcherSettings, "DELTAWATCH_KAFKA_CONFIG", "[1, 2]"),
    (WatcherSettings, "DELTAWATCH_HTTP_PORT", "70000"),
    (WatcherSettings, "DELTAWATCH_LOG_LEVEL", "LOUD"),
    (WatcherSettings, "DELTAWATCH_LOG_FORMAT", "xml"),
    (WatcherSettings, "DELTAWATCH_CLUSTER", "a/b"),
    (WatcherSettings, "DELTAWATCH_RESOURCE_TYPES", "Pod"),
    (WatcherSettings, "DELTAWATCH_RESOURCE_TYPES", ","),
    (WatcherSettings, "DELTAWATCH_INSTANCE_LABEL", "bad label!"),
    (WatcherSettings, "DELTAWATCH_DELTAS_TOPIC", "no spaces allowed"),
    (DifferSettings, "DELTAWATCH_HEARTBEAT_S", "-1"),
    (NotifierSettings, "DELTAWATCH_CALLBACK_TIMEOUT_S", "0"),
    (NotifierSettings, "DELTAWATCH_DELIVERY_MAX_ATTEMPTS", "0"),
    (NotifierSettings, "DELTAWATCH_CALLBACK_DENY_NETWORKS", "10.0.0.0/8,not-a-net"),
    (NotifierSettings, "DELTAWATCH_CPS_EVENT_FORMAT", "xml"),
    (NotifierSettings, "DELTAWATCH_CPS_MIN_NOTIFY_INTERVAL", "-5"),
]


@pytest.mark.parametrize(("cls", "variable", "value"), BAD_VALUES)
def test_bad_value_names_the_variable_in_one_line(
    cls: type[WatcherSettings], variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(cls)
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DELTAWATCH_HTTP_PORT", "DELTAWATCH_RESOURCE_TYPES"):
        monkeypatch.delenv(name, raising=False)
    watcher = load_settings(WatcherSettings)
    assert watcher.kafka_bootstrap_servers == "localhost:9092"
    assert watcher.http_port == 9101
    assert load_settings(DifferSettings).http_port == 9102
    assert load_settings(NotifierSettings).http_port == 9103
    assert watcher.instance_label == "k8splugin.io/rb-instance-id"
    assert GroupVersionKind(group="apps", version="v1", kind="Deployment") in watcher.resource_types
    assert GroupVersionKind(group="", version="v1", kind="Pod") in watcher.resource_types
    assert len(watcher.resource_types) == 9
    assert watcher.deltas_topic == "deltawatch.resource-deltas"
    assert watcher.subscriptions_topic == "deltawatch.subscriptions"
    assert watcher.source == "/deltawatch/clusters/default"


def test_lists_and_json_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAWATCH_NAMESPACES", "a, b,,c")
    monkeypatch.setenv("DELTAWATCH_RESOURCE_TYPES", "v1/Pod,example.com/v1alpha1/Widget")
    monkeypatch.setenv("DELTAWATCH_KAFKA_CONFIG", '{"security.protocol": "PLAINTEXT"}')
    settings = load_settings(WatcherSettings)
    assert settings.namespaces == ["a", "b", "c"]
    assert str(settings.resource_types[1]) == "example.com/v1alpha1/Widget"
    assert settings.kafka_config == {"security.protocol": "PLAINTEXT"}


def test_worker_exits_2_with_the_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.differ"],
        env={"DELTAWATCH_PARTITIONS": "many", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "deltawatch-differ: configuration error: DELTAWATCH_PARTITIONS: Input should be a "
        "valid integer, unable to parse string as an integer (got 'many')"
    ]
