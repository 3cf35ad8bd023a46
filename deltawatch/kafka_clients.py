"""Factories for confluent-kafka clients, so every client gets the same base configuration.

``DELTAWATCH_KAFKA_CONFIG`` (security, SASL, TLS …) is merged into every producer, consumer and
admin client; the per-use settings that correctness depends on (idempotence, isolation level,
manual commits) are applied *after* it so that an operator's extra properties cannot silently
turn them off.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient

from deltawatch.settings import CommonSettings


def base_config(settings: CommonSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    config.update(settings.kafka_config)
    return config


_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# What every consumer of ours relies on: offsets move only with our own (transactional) commits
# or not at all, and a partition without committed offsets is read from its beginning.
_MANUAL_OFFSETS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "fetch.message.max.bytes": _MAX_MESSAGE_BYTES,
}


GROUP_SESSION_TIMEOUT_MS = 45000
"""How long the group waits for a silent member before giving its partitions to others.

librdkafka's own default, set here so that :func:`session_timeout_s` knows it. Fast restarts
do not depend on it: a restarted member rejoins under its static ``group.instance.id`` and
gets its partitions back at once. A shorter one is not safe with static membership: when the
coordinator is unreachable for longer than the session (a broker restart, a paused broker),
librdkafka gives up the session itself, rejoins under a new member id and is then fenced by its
own earlier membership (``FENCED_INSTANCE_ID``, a fatal error; librdkafka issue 3437), which the
broker-outage reliability test caught at 10 s. ``DELTAWATCH_KAFKA_CONFIG`` may set another
value."""

_GROUP_DEFAULTS: dict[str, Any] = {"session.timeout.ms": GROUP_SESSION_TIMEOUT_MS}


def session_timeout_s(settings: CommonSettings) -> float:
    """The consumer groups' session timeout in effect (the operator's, else ours)."""
    return float(settings.kafka_config.get("session.timeout.ms", GROUP_SESSION_TIMEOUT_MS)) / 1000


def _client_config(
    settings: CommonSettings,
    client_id: str,
    required: dict[str, Any],
    overrides: dict[str, Any],
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    # Our defaults yield to the operator's properties; what correctness needs does not; the
    # caller's overrides come last: they are ours (tests, benches), never the operator's.
    return {
        **(defaults or {}),
        **base_config(settings),
        **required,
        "client.id": client_id,
        **overrides,
    }


TRANSACTION_RETRY_BACKOFF_MS = 10
"""A transaction begun right after a commit is refused by the coordinator
(CONCURRENT_TRANSACTIONS) until the previous one's markers are written, a few ms later;
librdkafka retries after ``retry.backoff.ms``, 100 ms by default, so a busy loop's every other
transaction took over 100 ms (back to back: p90 114 ms; with 10 ms, 14 ms;
``bench/transaction_commit.py``). Java's producer retries this case after 20 ms. Other retries
back off exponentially from here up to ``retry.backoff.max.ms`` (1 s), as before."""


def make_producer(
    settings: CommonSettings,
    *,
    transactional_id: str | None = None,
    client_id: str = "deltawatch",
    **overrides: Any,
) -> Producer:
    """An idempotent producer; transactional when ``transactional_id`` is given."""
    required: dict[str, Any] = {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "zstd",
        "message.max.bytes": _MAX_MESSAGE_BYTES,
    }
    defaults: dict[str, Any] = {}
    if transactional_id:
        required["transactional.id"] = transactional_id
        required["transaction.timeout.ms"] = 60000
        defaults["retry.backoff.ms"] = TRANSACTION_RETRY_BACKOFF_MS
    return Producer(_client_config(settings, client_id, required, overrides, defaults))


def make_consumer(
    settings: CommonSettings,
    group_id: str,
    *,
    read_committed: bool = True,
    client_id: str = "deltawatch",
    **overrides: Any,
) -> Consumer:
    """A consumer with manual offset management and ``read_committed`` isolation by default."""
    required = {
        **_MANUAL_OFFSETS,
        "group.id": group_id,
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        "partition.assignment.strategy": "cooperative-sticky",
        # A read_committed fetch is not woken when only a transaction's commit marker
        # arrives, so the broker's default 500 ms wait would be added to every hop after a
        # transactional producer. A few idle fetches per second are the price.
        "fetch.wait.max.ms": 50,
    }
    return Consumer(_client_config(settings, client_id, required, overrides, _GROUP_DEFAULTS))


READER_FETCH_WAIT_MS = 25
"""A ``read_committed`` fetch is not woken by a commit marker alone, and the end of a partition
is only known from a fetch that found nothing new; the broker holds such fetches for
``fetch.wait.max.ms``. librdkafka's 500 ms would be added to every restore, however small, and
to every answer a follower waits for. A few idle fetches a second per reader is the price."""

READER_QUEUE_BACKOFF_MS = 10
"""How long librdkafka postpones the next fetch once its local queue is full (its
``fetch.queue.backoff.ms``, 1000 by default). A restore fills the queue faster than it decodes
and then sat out whole seconds with nothing fetched: 55,000 changelog records of 5.9 KB Pods
took 1.5-2.4 s to restore at the default and 0.66-0.79 s at 10 ms (same queue size)."""


def make_reader(
    settings: CommonSettings, *, client_id: str = "deltawatch-reader", **overrides: Any
) -> Consumer:
    """A group-less consumer for ``assign()``-based reads (state restore, tailing)."""
    required = {
        **_MANUAL_OFFSETS,
        "group.id": f"{client_id}-unused",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "fetch.wait.max.ms": READER_FETCH_WAIT_MS,
        "fetch.queue.backoff.ms": READER_QUEUE_BACKOFF_MS,
    }
    return Consumer(_client_config(settings, client_id, required, overrides))


def produce_when_room(
    producer: Producer,
    topic: str,
    *,
    key: bytes | None,
    value: bytes | None,
    wait_s: float,
    **options: Any,
) -> None:
    """``produce()``, serving delivery reports while librdkafka's queue is full until it has room.

    A full queue means Kafka is slow or down; the record must not be dropped, and waiting in
    ``poll`` is what frees the queue (its acknowledgements run the delivery callbacks).
    """
    while True:
        try:
            producer.produce(topic, key=key, value=value, **options)
            return
        except BufferError:
            producer.poll(wait_s)


def make_admin(settings: CommonSettings, **overrides: Any) -> AdminClient:
    return AdminClient({**base_config(settings), **overrides})


def consume_available(
    consumer: Consumer, max_messages: int, wait_s: float, linger_s: float = 0.0
) -> list[Message]:
    """Wait up to ``wait_s`` for one message, then take what else arrives within ``linger_s``.

    ``consume(n, timeout)`` alone sits out its whole timeout unless ``n`` messages come, which
    would add that much latency to every hop of a lightly loaded pipeline. A short linger lets a
    loop that pays a fixed cost per batch (a transaction) still gather full batches under load.
    """
    first = consumer.poll(wait_s)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=linger_s)]
