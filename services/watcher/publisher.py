"""The watcher's Kafka side: drain the outbox into the resource-events topic, losing nothing.

One thread owns the producer, so records leave in the order the outbox received them; with
the idempotent producer that order also holds per partition across retries, which is what
keeps a list marker ahead of the listed objects that follow it. Delivery never times out
(``message.timeout.ms=0``): while Kafka is down librdkafka keeps retrying, its bounded
buffer fills, :meth:`Producer.produce` raises ``BufferError``, this thread waits, the outbox
fills and the watch threads stop reading. A record is counted as published only when the
broker has acknowledged it.

List markers have no key and go to every partition (``partition=`` on produce), so every
differ partition sees where each list begins and ends.

With leader election, ``may_publish`` (the elector's "do we still lead at this monotonic
instant") is asked before each record is handed to librdkafka: a leader that stalled past its
renew deadline drops records instead of publishing them next to the new leader's. What
librdkafka already holds is purged when the term ends (:meth:`Publisher.drop_pending`); what
escapes both (handed over just before a stall) carries the old epoch, which the differ drops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from deltawatch.kafka_clients import make_producer, produce_when_room
from deltawatch.latency import elapsed_s
from deltawatch.logs import get_logger
from deltawatch.settings import WatcherSettings
from services.watcher.metrics import WatcherMetrics
from services.watcher.outbox import Outbox, Outgoing

IDLE_WAIT_S = 0.1
REPORT_POLL_S = 0.002
BUFFER_DEFAULTS = {
    "queue.buffering.max.kbytes": 64 * 1024,
    "queue.buffering.max.messages": 100_000,
    # Each watched change is a record of its own that the next hop waits for; under load records
    # still batch while earlier requests are in flight, so a longer linger only adds latency.
    "linger.ms": 1,
}


class _Countdown:
    """Runs ``action`` after ``n`` acknowledgements (a marker sent to n partitions)."""

    def __init__(self, n: int, action: Callable[[], None]) -> None:
        self._left = n
        self._action = action
        self._lock = threading.Lock()

    def done(self) -> None:
        with self._lock:
            self._left -= 1
            fire = self._left == 0
        if fire:
            self._action()


class Publisher:
    def __init__(
        self,
        settings: WatcherSettings,
        outbox: Outbox,
        metrics: WatcherMetrics,
        on_fatal: Callable[[str], None],
        may_publish: Callable[[], bool] = lambda: True,
    ) -> None:
        self.topic = settings.resource_events_topic
        self.may_publish = may_publish
        self.outbox = outbox
        self.metrics = metrics
        self.on_fatal = on_fatal
        self.log = get_logger("watcher.publisher")
        overrides: dict[str, Any] = {"error_cb": self._on_error, "message.timeout.ms": 0}
        # librdkafka's own buffer is the second stage of backpressure; an operator may size
        # it (DELTAWATCH_KAFKA_CONFIG), otherwise it is capped well below librdkafka's 1 GiB.
        for name, value in BUFFER_DEFAULTS.items():
            if name not in settings.kafka_config:
                overrides[name] = value
        self.producer: Producer = make_producer(
            settings, client_id="deltawatch-watcher", **overrides
        )
        self._partitions = 0
        # Read at scrape time: while this thread waits on a full librdkafka buffer, the
        # outbox keeps filling and the gauges must show it.
        metrics.queue_items.set_function(lambda: outbox.depth)
        metrics.queue_bytes.set_function(lambda: outbox.bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> int:
        """Publish what is queued, wait for acknowledgements; return records left unsent."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        left = int(self.producer.flush(max(0.0, deadline - time.monotonic())))
        return left + self.outbox.depth

    def drop_pending(self) -> int:
        """Drop what is queued here and in librdkafka (not what is in flight); the count."""
        dropped = self.outbox.clear()
        self.producer.purge(in_queue=True, in_flight=False, blocking=True)
        self.producer.poll(0)
        return dropped

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # Delivery reports run only inside poll(): while records await their
            # acknowledgement, look every few ms, or an idle outbox would hold each report (and
            # the first hop's histogram, the published count, a list's readiness) up to 100 ms.
            item = self.outbox.get(REPORT_POLL_S if len(self.producer) else IDLE_WAIT_S)
            if item is None:
                self.producer.poll(0)
                if self._stop.is_set():
                    return
                continue
            self._send(item)
            self.producer.poll(0)

    def partition_count(self) -> int:
        """The topic's partitions, re-read for each marker (topics can grow); cached if Kafka
        does not answer."""
        while True:
            try:
                meta = self.producer.list_topics(self.topic, timeout=5.0)
                partitions = meta.topics[self.topic].partitions
                if partitions:
                    self._partitions = len(partitions)
            except KafkaException as exc:
                self.log.warning("no topic metadata; using the last known count", error=str(exc))
            if self._partitions:
                return self._partitions
            time.sleep(0.5)  # never known yet: markers cannot go anywhere before it is

    def _send(self, item: Outgoing) -> None:
        if not item.all_partitions:
            self._produce(item, None, item.on_delivered)
            return
        count = self.partition_count()
        done = _Countdown(count, item.on_delivered) if item.on_delivered else None
        for partition in range(count):
            self._produce(item, partition, done.done if done else None)

    def _produce(
        self, item: Outgoing, partition: int | None, on_delivered: Callable[[], None] | None
    ) -> None:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None and err.code() == KafkaError._PURGE_QUEUE:
                return  # dropped on purpose: leadership ended
            if err is not None:
                self.metrics.publish_errors.labels(err.name()).inc()
                self.log.error(
                    "record not delivered",
                    error=err.str(),
                    kind=item.kind,
                    event_type=item.event_type,
                    bytes=item.size,
                )
                return
            if partition is None or partition == 0:
                self.metrics.events_published.labels(item.kind, item.event_type).inc()
                if item.observed_at is not None:
                    self.metrics.publish_latency.observe(elapsed_s(item.observed_at, time.time()))
            if on_delivered is not None:
                on_delivered()

        if not self.may_publish():
            self.metrics.publish_errors.labels("not_leader").inc()
            return
        kwargs: dict[str, Any] = {"on_delivery": delivered}
        if partition is not None:
            kwargs["partition"] = partition
        try:
            produce_when_room(
                self.producer, self.topic, key=item.key, value=item.value, wait_s=0.1, **kwargs
            )
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            self.metrics.publish_errors.labels(error.name()).inc()
            if error.fatal():
                self.on_fatal(error.str())
                return
            self.log.error("produce refused the record", error=error.str(), kind=item.kind)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self.metrics.publish_errors.labels(error.name()).inc()
            self.on_fatal(error.str())
        else:
            # Transient (broker down, transport): librdkafka reconnects and retries by itself.
            self.log.warning("kafka client error", error=error.str())
