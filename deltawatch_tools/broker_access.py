"""Which Kafka broker a ``deltawatch`` client command talks to, and the one line it prints when
that broker cannot be used.

**Choosing the broker.** ``KAFKA_BOOTSTRAP_SERVERS`` wins when it is set. When it is not, the
broker that ``deltawatch kafka start`` runs is used, found through the run state it keeps in
the cache (:mod:`deltawatch_tools.local_state`); only when none runs does the contract's
default, ``localhost:9092``, apply. The local broker keeps its free port rather than taking
9092: on a shared or developer machine 9092 is often another Kafka's, and a client silently
talking to *that* one is worse than a client that has to be told where to go. Every command
says on stderr which broker it uses and why (or, when that broker fails, names it in
its one error line), so the choice is never a surprise.

**Failing.** librdkafka retries an unreachable broker for ever and logs every attempt. The
clients made here send those log lines to the ``deltawatch.librdkafka`` logger (the terminal
sees them only with ``--debug``), and :func:`probe` asks the broker for its metadata, for at
most the command's ``--timeout``, before anything else is done. When that fails it raises
:class:`CliError` with one line naming the setting, the address and the cause — the last
error librdkafka reported, not its generic "transport failure". A security mismatch (TLS,
SASL, credentials) cannot heal by waiting, so it fails at once and names
``DELTAWATCH_KAFKA_CONFIG``. Errors raised later by a command's own reads and writes (a topic
the credentials may not use, say) are turned into the same kind of line by
:func:`kafka_session`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata  # type: ignore[attr-defined]  # public, unlisted

from deltawatch.kafka_clients import make_admin
from deltawatch.settings import CommonSettings, SettingsError, load_settings
from deltawatch_tools.localkafka.broker import LocalKafkaBroker

LIBRDKAFKA_LOGGER = "deltawatch.librdkafka"
ADDRESS_VARIABLE = "KAFKA_BOOTSTRAP_SERVERS"
SECURITY_VARIABLE = "DELTAWATCH_KAFKA_CONFIG"

# Failures of the connection's security settings: waiting does not cure them.
SECURITY_CODES = frozenset(
    {
        KafkaError._SSL,
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
    }
)
# librdkafka reports some of them as transport errors; its text tells them apart.
SECURITY_MARKERS = ("security.protocol", "SSL handshake", "SASL")
AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)


class CliError(Exception):
    """A failure the CLI reports as one line on stderr (exit ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class BrokerChoice:
    """The bootstrap address a command uses, and the setting it came from."""

    bootstrap: str
    origin: str
    started_here: bool = False
    """This process started the local broker (``deltawatch run`` / ``demo``)."""

    def announcement(self) -> str:
        return f"kafka: {self.bootstrap} ({self.origin})"


def default_bootstrap() -> str:
    return str(CommonSettings.model_fields["kafka_bootstrap_servers"].default)


def choose_broker(*, start_local: bool = False) -> BrokerChoice:
    """``KAFKA_BOOTSTRAP_SERVERS``, else the local broker, else the contract's default.

    ``start_local``: start the local broker when none runs (``deltawatch run`` / ``demo``)
    instead of falling back to the default.
    """
    given = os.environ.get(ADDRESS_VARIABLE, "").strip()
    if given:
        return BrokerChoice(given, ADDRESS_VARIABLE)
    broker = LocalKafkaBroker()
    state = broker.status()
    started = state is None and start_local
    if started:
        state = broker.start()
    if state is not None:
        origin = f"the local broker of 'deltawatch kafka start'; {ADDRESS_VARIABLE} unset"
        return BrokerChoice(state.bootstrap, origin, started_here=started)
    return BrokerChoice(
        default_bootstrap(), f"{ADDRESS_VARIABLE} unset and no local broker running: the default"
    )


def client_settings(choice: BrokerChoice) -> CommonSettings:
    """The shared settings with ``choice`` as bootstrap and librdkafka's log sent to logging.

    ``logger`` is a client property (not a value JSON can carry in
    ``DELTAWATCH_KAFKA_CONFIG``), so it is added after validation; every client the runtime
    builds from these settings (:mod:`deltawatch.kafka_clients`) gets it.
    """
    try:
        settings = load_settings(CommonSettings, kafka_bootstrap_servers=choice.bootstrap)
    except SettingsError as exc:
        raise CliError(f"configuration error: {exc}", exit_code=2) from None
    extra = {**settings.kafka_config, "logger": logging.getLogger(LIBRDKAFKA_LOGGER)}
    return settings.model_copy(update={"kafka_config": extra})


def cause_of(error: KafkaError) -> str:
    """librdkafka's reason without the broker prefix and the timing suffix it adds."""
    text = error.str()
    text = re.sub(r"^\S+/(bootstrap|\d+): ", "", text)
    text = re.sub(r" \(after \d+ms in state \w+\)$", "", text)
    return text.strip() or error.name()


def is_security_failure(error: KafkaError) -> bool:
    text = error.str()
    return error.code() in SECURITY_CODES or any(m in text for m in SECURITY_MARKERS)


def describe_failure(choice: BrokerChoice, errors: list[KafkaError], waited_s: float) -> str:
    """The one line for a broker that did not answer: setting, address, cause."""
    security = [e for e in errors if is_security_failure(e)]
    if security:
        return security_line(choice, security[-1])
    informative = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN] or errors
    cause = cause_of(informative[-1]) if informative else "no answer"
    return (
        f"cannot reach Kafka at {choice.bootstrap} ({choice.origin}) within {waited_s:g}s: {cause}"
    )


def security_line(choice: BrokerChoice, error: KafkaError) -> str:
    return (
        f"Kafka at {choice.bootstrap} ({choice.origin}) refused the connection's security "
        f"settings ({SECURITY_VARIABLE}): {cause_of(error)}"
    )


def describe_kafka_error(choice: BrokerChoice, error: KafkaError) -> str:
    """The one line for an error a command met after the broker answered."""
    if error.code() in AUTHORIZATION_CODES:
        return (
            f"Kafka at {choice.bootstrap} denied access ({SECURITY_VARIABLE} credentials): "
            f"{cause_of(error)}"
        )
    if is_security_failure(error):
        return security_line(choice, error)
    return f"Kafka at {choice.bootstrap} ({choice.origin}): {cause_of(error)}"


def probe(settings: CommonSettings, choice: BrokerChoice, timeout_s: float) -> ClusterMetadata:
    """The cluster's metadata, asked for until ``timeout_s``; :class:`CliError` otherwise.

    The cause named is what the connection attempts reported (``error_cb``), which says why
    ("Connection refused"); the metadata call's own error ("Broker transport failure") is
    only the fallback.
    """
    reported: list[KafkaError] = []
    try:
        admin = make_admin(settings, error_cb=reported.append)
    except KafkaException as exc:  # a property librdkafka does not know or accept
        raise CliError(
            f"configuration error: {SECURITY_VARIABLE}: {exc.args[0].str()}", 2
        ) from None
    call_errors: list[KafkaError] = []
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        wait_s = min(1.0, max(0.1, deadline - time.monotonic()))
        try:
            metadata: ClusterMetadata = admin.list_topics(timeout=wait_s)
            if metadata.brokers:
                return metadata
        except KafkaException as exc:
            call_errors[:] = [exc.args[0]]
        admin.poll(0)  # serves error_cb
        errors = [*call_errors, *reported]
        if any(is_security_failure(e) or e.fatal() for e in errors):
            raise CliError(describe_failure(choice, errors, time.monotonic() - started))
        if time.monotonic() >= deadline:
            raise CliError(describe_failure(choice, errors, timeout_s))


def announce(choice: BrokerChoice) -> None:
    typer.echo(choice.announcement(), err=True)


def pipeline_broker(timeout_s: float) -> BrokerChoice:
    """The broker ``deltawatch run`` / ``demo`` use: chosen as for a client command, but the
    local broker is started when none runs; announced and probed like a client's."""
    choice = choose_broker(start_local=True)
    probe(client_settings(choice), choice, timeout_s)
    announce(choice)
    return choice


@dataclass(frozen=True)
class KafkaSession:
    """What a client command works with once the broker has answered."""

    settings: CommonSettings
    choice: BrokerChoice
    metadata: ClusterMetadata

    def require_topic(self, topic: str, variable: str, who_creates: str) -> None:
        if topic not in self.metadata.topics:
            raise CliError(
                f"topic {topic} ({variable}) does not exist on Kafka at "
                f"{self.choice.bootstrap}: {who_creates} creates it at start"
            )


@contextmanager
def kafka_session(timeout_s: float) -> Iterator[KafkaSession]:
    """Choose and announce the broker, probe it, and turn Kafka errors into one line."""
    choice = choose_broker()
    settings = client_settings(choice)
    session = KafkaSession(settings, choice, probe(settings, choice, timeout_s))
    announce(choice)  # after the probe: a failure's one line names the broker itself
    try:
        yield session
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not isinstance(error, KafkaError):
            raise
        raise CliError(describe_kafka_error(choice, error)) from exc
