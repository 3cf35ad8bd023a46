"""The CLI's one-line failures and its broker choice, without a broker: librdkafka's errors
are built as librdkafka reports them (the texts below are what it printed here against a
closed port, an unknown host and a TLS mismatch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from deltawatch_tools.broker_access import (
    BrokerChoice,
    CliError,
    cause_of,
    choose_broker,
    describe_failure,
    describe_kafka_error,
)
from deltawatch_tools.cli import one_line
from deltawatch_tools.cps_cli import anchors_cell, cps_command
from deltawatch_tools.deltas_cli import event_cluster

GIVEN = BrokerChoice("10.0.0.9:9093", "KAFKA_BOOTSTRAP_SERVERS")
REFUSED = KafkaError(
    KafkaError._TRANSPORT,
    "10.0.0.9:9093/bootstrap: Connect to ipv4#10.0.0.9:9093 failed: Connection refused "
    "(after 0ms in state CONNECT)",
)
ALL_DOWN = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
TLS = KafkaError(
    KafkaError._SSL,
    "10.0.0.9:9093/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong "
    "version number (after 3ms in state SSL_HANDSHAKE)",
)


def test_the_cause_loses_the_broker_prefix_and_the_timing() -> None:
    assert cause_of(REFUSED) == "Connect to ipv4#10.0.0.9:9093 failed: Connection refused"
    assert cause_of(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)) == (
        "Broker: Topic authorization failed"
    )


def test_an_unreachable_broker_is_named_with_its_setting_and_the_last_real_cause() -> None:
    line = describe_failure(GIVEN, [REFUSED, ALL_DOWN], 2.0)
    assert line == (
        "cannot reach Kafka at 10.0.0.9:9093 (KAFKA_BOOTSTRAP_SERVERS) within 2s: "
        "Connect to ipv4#10.0.0.9:9093 failed: Connection refused"
    )
    assert "\n" not in line
    assert describe_failure(GIVEN, [], 1.0).endswith("within 1s: no answer")


def test_a_security_mismatch_names_the_kafka_config_variable() -> None:
    line = describe_failure(GIVEN, [REFUSED, TLS, ALL_DOWN], 0.2)
    assert "DELTAWATCH_KAFKA_CONFIG" in line
    assert "10.0.0.9:9093" in line
    assert line.endswith("SSL handshake failed: error:0A00010B:SSL routines::wrong version number")
    plaintext_to_tls = KafkaError(
        KafkaError._TRANSPORT,
        "b/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect "
        "security.protocol configuration (connecting to a SSL listener?)",
    )
    assert "DELTAWATCH_KAFKA_CONFIG" in describe_failure(GIVEN, [plaintext_to_tls], 10)


def test_an_authorization_failure_after_connecting_is_one_line_about_credentials() -> None:
    line = describe_kafka_error(GIVEN, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert line == (
        "Kafka at 10.0.0.9:9093 denied access (DELTAWATCH_KAFKA_CONFIG credentials): "
        "Broker: Topic authorization failed"
    )
    other = describe_kafka_error(GIVEN, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert (
        other
        == "Kafka at 10.0.0.9:9093 (KAFKA_BOOTSTRAP_SERVERS): Broker: Unknown topic or partition"
    )


def test_any_exception_becomes_its_first_line() -> None:
    assert one_line(CliError("cannot reach Kafka")) == "cannot reach Kafka"
    assert one_line(RuntimeError("Kafka exited with 1:\nlog tail\nmore")) == (
        "RuntimeError: Kafka exited with 1:"
    )
    assert one_line(KafkaException(KafkaError(KafkaError._TIMED_OUT, "Timed out"))) == (
        "KafkaException: Timed out"
    )
    assert one_line(ValueError()) == "ValueError"


def test_the_variable_wins_over_the_local_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DELTAWATCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", " broker-a:9092,broker-b:9092 ")
    assert choose_broker() == BrokerChoice("broker-a:9092,broker-b:9092", "KAFKA_BOOTSTRAP_SERVERS")


def test_without_variable_nor_local_broker_the_contract_default_is_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DELTAWATCH_CACHE_DIR", str(tmp_path))  # no run state: nothing runs
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    choice = choose_broker()
    assert choice.bootstrap == "localhost:9092"
    assert "KAFKA_BOOTSTRAP_SERVERS unset" in choice.announcement()
    assert "no local broker running" in choice.announcement()


def test_cps_commands_leave_anchors_out_when_none_are_named() -> None:
    assert cps_command("subscribe-delta-notification", "ds1", None) == {
        "action": "subscribe-delta-notification",
        "dataspace": "ds1",
    }
    assert cps_command("unsubscribe-delta-notification", "ds1", ["a", "b"])["anchors"] == [
        "a",
        "b",
    ]
    assert anchors_cell({"all-anchors": True, "excluded-anchors": ["x"]}) == "all except x"
    assert anchors_cell({"all-anchors": False, "anchors": ["a", "b"]}) == "a,b"


def test_an_events_cluster_is_its_data_cluster_else_its_source() -> None:
    source = {"source": "/deltawatch/clusters/east"}
    assert event_cluster(source, {"cluster": "west"}) == "west"
    assert event_cluster(source, {"instance-id": "i"}) == "east"
    assert event_cluster({"source": "urn:other"}, None) is None
