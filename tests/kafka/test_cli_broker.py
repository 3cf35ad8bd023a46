"""``deltawatch`` as a user meets it, run as the installed command in a subprocess: it finds the
local broker without ``KAFKA_BOOTSTRAP_SERVERS`` and says so; a closed port, a security
mismatch, a missing notifier each end in one line on stderr and a known exit code, within
``--timeout``; ``--debug`` shows librdkafka's log and the traceback; completion works.

The closed-port tests need no broker (nothing listens on the port); the others use the real
one — for the discovery test, the local broker of ``deltawatch kafka start`` itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from deltawatch.cloud_events import DELTA_TYPE, new_event, to_kafka
from deltawatch.kafka_clients import make_admin, make_producer
from deltawatch.settings import CommonSettings
from deltawatch.topics import contract_topics, ensure_topics
from deltawatch_tools.broker_access import pipeline_broker
from deltawatch_tools.local_state import free_port
from deltawatch_tools.localkafka.broker import BrokerState, LocalKafkaBroker
from tests.fixtures.cli import STARTUP_S, run_cli, user_env
from tests.fixtures.kafka import unique_topic_env

CLIENT_COMMANDS = [
    ["subscription", "create", "-i", "inst-1", "-n", "sub-1", "--url", "http://127.0.0.1:9/n"],
    ["subscription", "delete", "-i", "inst-1", "-n", "sub-1"],
    ["subscription", "get", "-i", "inst-1", "-n", "sub-1"],
    ["subscription", "list"],
    ["cps", "subscribe", "--dataspace", "ds1", "--anchor", "inst-1"],
    ["cps", "unsubscribe", "--dataspace", "ds1"],
    ["cps", "list"],
    ["deltas", "tail"],
    ["run"],
    ["demo"],
]


def closed_port_env() -> tuple[str, dict[str, str]]:
    address = f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    return address, user_env({"KAFKA_BOOTSTRAP_SERVERS": address})


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=" ".join)
def test_a_closed_port_is_one_line_and_exit_1_within_the_timeout(command: list[str]) -> None:
    """Client commands, and ``run`` / ``demo`` before they start anything."""
    address, env = closed_port_env()
    run = run_cli(*command, "--timeout", "2", env=env)
    assert run.returncode == 1, run.stderr
    assert run.stdout == ""
    assert len(run.stderr_lines) == 1, run.stderr
    assert run.stderr_lines[0].startswith(
        f"error: cannot reach Kafka at {address} (KAFKA_BOOTSTRAP_SERVERS) within 2s: "
    )
    assert run.stderr_lines[0].endswith("Connection refused")
    assert run.seconds < 2 + STARTUP_S


def test_the_default_timeout_is_ten_seconds() -> None:
    address, env = closed_port_env()
    run = run_cli("cps", "list", env=env)
    assert run.returncode == 1
    assert run.stderr_lines == [
        f"error: cannot reach Kafka at {address} (KAFKA_BOOTSTRAP_SERVERS) within 10s: "
        f"Connect to ipv4#{address} failed: Connection refused"
    ]
    assert 10 <= run.seconds < 10 + STARTUP_S


def test_debug_shows_librdkafkas_log_and_the_traceback() -> None:
    address, env = closed_port_env()
    run = run_cli("--debug", "subscription", "list", "--timeout", "1", env=env)
    assert run.returncode == 1
    assert "deltawatch.librdkafka: FAIL [rdkafka#" in run.stderr
    assert f"Connect to ipv4#{address} failed: Connection refused" in run.stderr
    assert "Traceback" in run.stderr
    assert len(run.stderr_lines) > 5


def test_shell_completion_knows_the_verbs() -> None:
    env = user_env({"_DELTAWATCH_COMPLETE": "complete_bash", "COMP_CWORD": "2"})
    run = run_cli(env={**env, "COMP_WORDS": "deltawatch cps "})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["subscribe", "unsubscribe", "list"]
    run = run_cli(env={**env, "COMP_WORDS": "deltawatch deltas tail --output ", "COMP_CWORD": "4"})
    assert run.stdout.split() == ["pretty", "json"]


@pytest.mark.kafka
def test_a_tls_mismatch_names_the_kafka_config_variable_at_once(kafka_bootstrap: str) -> None:
    env = user_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DELTAWATCH_KAFKA_CONFIG": '{"security.protocol": "SSL"}',
        }
    )
    run = run_cli("subscription", "list", env=env)
    assert run.returncode == 1
    assert len(run.stderr_lines) == 1, run.stderr
    line = run.stderr_lines[0]
    assert line.startswith(f"error: Kafka at {kafka_bootstrap} (KAFKA_BOOTSTRAP_SERVERS) ")
    assert "refused the connection's security settings (DELTAWATCH_KAFKA_CONFIG): SSL" in line
    assert run.seconds < 10  # not the whole --timeout: waiting cannot cure it


@pytest.mark.kafka
def test_run_and_demo_take_the_running_local_broker(
    local_broker: BrokerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    choice = pipeline_broker(timeout_s=10)
    assert (choice.bootstrap, choice.started_here) == (local_broker.bootstrap, False)


@pytest.fixture
def local_broker(kafka_broker: LocalKafkaBroker | None) -> Iterator[BrokerState]:
    """The broker of ``deltawatch kafka start``, running; started here (and stopped after)
    only when the session uses an external broker."""
    broker = kafka_broker or LocalKafkaBroker()
    started = broker.status() is None
    yield broker.start()
    if started:
        broker.stop()


def delta(settings: CommonSettings, instance: str, cluster: str, sequence: int) -> None:
    event = new_event(
        event_type=DELTA_TYPE,
        source=f"/deltawatch/clusters/{cluster}",
        event_id=f"{instance}:{sequence}",
        subject=instance,
        time=datetime.now(UTC),
        data={
            "instance-id": instance,
            "cluster": cluster,
            "sequence": sequence,
            "resource-changes": {"created": [], "deleted": [], "modified": []},
        },
    )
    record = to_kafka(event, instance)
    producer = make_producer(settings, client_id="test-cli-deltas")
    producer.produce(
        settings.deltas_topic, key=record.key, value=record.value, headers=record.headers
    )
    assert producer.flush(10) == 0


@pytest.mark.kafka
def test_without_the_variable_commands_use_the_local_broker_and_say_so(
    local_broker: BrokerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = unique_topic_env(local_broker.bootstrap, "cli-local")
    for name, value in topics.items():
        monkeypatch.setenv(name, value)
    settings = CommonSettings()
    ensure_topics(make_admin(settings), list(contract_topics(settings).values()))
    delta(settings, "inst-a", "east", 1)
    delta(settings, "inst-b", "west", 1)
    env = user_env(topics, bootstrap=False)
    said = (
        f"kafka: {local_broker.bootstrap} (the local broker of 'deltawatch kafka start'; "
        "KAFKA_BOOTSTRAP_SERVERS unset)"
    )

    listed = run_cli("subscription", "list", "--json", env=env)
    assert (listed.returncode, listed.stderr_lines) == (0, [said])
    assert json.loads(listed.stdout) == []

    west = run_cli(
        "deltas", "tail", "--from-beginning", "--max-events", "1", "--cluster", "west",
        "--output", "json", env=env,
    )  # fmt: skip
    assert (west.returncode, west.stderr_lines) == (0, [said])
    event = json.loads(west.stdout)
    assert (event["subject"], event["data"]["cluster"]) == ("inst-b", "west")

    a = run_cli("deltas", "tail", "--from-beginning", "--max-events", "1", "-i", "inst-a", env=env)
    assert a.returncode == 0, a.stderr
    assert " delta " in a.stdout
    assert " inst-a id=inst-a:1 cluster=east seq=1" in a.stdout

    started = time.monotonic()
    unanswered = run_cli("cps", "subscribe", "--dataspace", "ds1", "--timeout", "2", env=env)
    assert unanswered.returncode == 3
    assert unanswered.stderr_lines[0] == said
    assert unanswered.stderr_lines[1].startswith("error: no result for command c-")
    assert unanswered.stderr_lines[1].endswith(
        f"within 2s: is a notifier consuming {settings.commands_topic} on {local_broker.bootstrap}?"
    )
    assert len(unanswered.stderr_lines) == 2
    assert time.monotonic() - started < 2 + STARTUP_S


def test_a_usage_error_is_one_line_and_exit_2() -> None:
    run = run_cli("cps", "subscribe", "--anchor", "inst-1", env=user_env({}))
    assert run.returncode == 2
    assert run.stderr_lines == [
        "error: Missing option '--dataspace' / '-d'. (see 'deltawatch cps subscribe --help')"
    ]


def test_a_property_librdkafka_rejects_is_one_configuration_line() -> None:
    env = user_env({"DELTAWATCH_KAFKA_CONFIG": '{"no.such.property": 1}'})
    run = run_cli("cps", "list", env=env)
    assert run.returncode == 2
    assert run.stderr_lines == [
        "error: configuration error: DELTAWATCH_KAFKA_CONFIG: No such configuration property: "
        '"no.such.property"'
    ]
