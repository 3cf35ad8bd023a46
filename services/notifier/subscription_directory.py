"""The REST facade's read model: every subscription, as the compacted subscriptions topic says.

Reads (CONTRACT §9) must show what Kafka holds, on whichever notifier replica answers, and a
client that just wrote through one replica must read its write through any other. The notifier
core's own table only covers the partitions assigned to that replica, so the facade keeps its
own copy of the whole topic: a group-less reader assigned every partition from the beginning,
``read_committed`` (the core writes state in transactions), applying each record by key and
removing a key on its tombstone.

"Read your writes" across replicas: before answering, a read asks the broker for the topic's
high watermarks *now* (one ListOffsets round trip) and waits until this reader has consumed up
to them. The high watermark, not the last stable offset: a transaction's commit returns before
its markers reach the partitions, so just after a write was acknowledged the last stable offset
may still sit below it; a ``read_committed`` reader passes an offset only once its transaction
is resolved, so reaching the high watermark means every write acknowledged before the read is
in. The price: a transaction left open (a producer that died mid-transaction) holds reads back
until it is fenced or times out; the wait is bounded by the caller
(``DELTAWATCH_API_TIMEOUT_S``, then 504).

:class:`SubscriptionIndex` is the pure part (records in, lookups out);
:class:`SubscriptionDirectory` is the Kafka edge that feeds it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import Gauge, Histogram
from pydantic import ValidationError

from deltawatch.compacted_table import TableFollower, is_transient
from deltawatch.kafka_clients import consume_available, make_admin, make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import CommonSettings
from services.notifier.subscription_state import SubscriptionState

SUBSCRIPTIONS = Gauge(
    "deltawatch_notifier_rest_directory_subscriptions",
    "Subscriptions known to the REST facade's directory (all instances, all partitions).",
)
CATCH_UP_SECONDS = Histogram(
    "deltawatch_notifier_rest_directory_catch_up_seconds",
    "Time a read waited for the directory to reach the subscriptions topic's end offsets.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

log = get_logger("notifier.subscription_directory")

SECRET_FIELDS = frozenset({"secret", "sealed-secret"})


class DirectoryLagError(TimeoutError):
    """The directory did not reach the topic's end offsets within the allowed time."""


@dataclass
class SubscriptionIndex:
    """``<instance-id>/<name>`` → the StatusSubscription JSON shown to users."""

    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_instance: dict[str, dict[str, str]] = field(default_factory=dict)
    """instance-id → subscription name → key."""

    def apply(self, key: str, value: bytes | None) -> None:
        """One record of the subscriptions topic; ``None`` is a tombstone.

        Records that are not subscription states (``cps/<dataspace>`` keys, whose key shape an
        instance named ``cps`` would share) are recognised by their value and leave no entry.
        """
        self._remove(key)
        if value is None:
            return
        try:
            state = SubscriptionState.model_validate_json(value)
        except ValidationError:
            return
        if state.key != key:
            log.warning("subscription state under a foreign key ignored", key=key)
            return
        shown = {k: v for k, v in state.public().items() if k not in SECRET_FIELDS}
        self.by_key[key] = shown
        self.by_instance.setdefault(state.instance_id, {})[state.name] = key

    def _remove(self, key: str) -> None:
        old = self.by_key.pop(key, None)
        if old is None:
            return
        names = self.by_instance.get(str(old["instance-id"]), {})
        names.pop(str(old["name"]), None)
        if not names:
            self.by_instance.pop(str(old["instance-id"]), None)

    def of_instance(self, instance_id: str) -> list[dict[str, Any]]:
        names = self.by_instance.get(instance_id, {})
        return [self.by_key[names[name]] for name in sorted(names)]

    def get(self, instance_id: str, name: str) -> dict[str, Any] | None:
        key = self.by_instance.get(instance_id, {}).get(name)
        return None if key is None else self.by_key[key]

    def __len__(self) -> int:
        return len(self.by_key)


@dataclass
class _Waiter:
    targets: dict[int, int]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SubscriptionDirectory:
    """Reads the whole subscriptions topic in a thread into a :class:`SubscriptionIndex`."""

    def __init__(
        self, settings: CommonSettings, client_id: str = "deltawatch-notifier-directory"
    ) -> None:
        self._settings = settings
        self._topic: str = settings.subscriptions_topic
        self._client_id = client_id
        self._index = SubscriptionIndex()
        self._follower: TableFollower | None = None
        self._partitions: list[int] = []
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._restored = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_restored: Callable[[], None] | None = None
        self._admin = make_admin(settings)

    @property
    def ready(self) -> bool:
        """Consumed up to the end offsets found at start: reads reflect the present."""
        return self._restored.is_set()

    def start(self, on_restored: Callable[[], None] | None = None) -> None:
        """Read the topic from the beginning in a thread; ``on_restored`` once at its end."""
        self._on_restored = on_restored
        reader = make_reader(self._settings, client_id=self._client_id)
        follower = TableFollower(reader, self._topic, _log_read_error)
        try:
            follower.start()
        except Exception:
            reader.close()
            raise
        self._follower = follower
        self._partitions = follower.partitions
        self._thread = threading.Thread(
            target=self._run, args=(follower,), name="rest-directory", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def of_instance(self, instance_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._index.of_instance(instance_id)]

    def get(self, instance_id: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._index.get(instance_id, name)
            return None if found is None else dict(found)

    async def end_offsets(self) -> dict[int, int]:
        """The topic's high watermarks now, in one ListOffsets request."""
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        request = {TopicPartition(self._topic, p): latest for p in self._partitions}
        futures = self._admin.list_offsets(
            request, isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=10
        )
        targets: dict[int, int] = {}
        for partition, future in futures.items():
            info = await asyncio.wrap_future(future)
            targets[partition.partition] = int(info.offset)
        return targets

    async def catch_up(self, timeout_s: float) -> None:
        """Wait until every write committed before this call is in the directory."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    try:
                        targets = await self.end_offsets()
                        break
                    except KafkaException as exc:
                        if not is_transient(exc):
                            raise
                        await asyncio.sleep(0.1)
                future: asyncio.Future[None] = loop.create_future()
                waiter = _Waiter(targets, loop, future)
                with self._lock:
                    if self._reached(targets):
                        return
                    self._waiters.append(waiter)
                try:
                    await future
                finally:
                    with self._lock, contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
        except TimeoutError:
            raise DirectoryLagError(
                f"the subscription directory did not catch up within {timeout_s:g}s"
            ) from None
        finally:
            CATCH_UP_SECONDS.observe(loop.time() - started)

    def _run(self, follower: TableFollower) -> None:
        try:
            while not self._stop.is_set():
                messages = consume_available(follower.reader, 500, 0.2)
                if messages:
                    self._apply(follower, messages)
        finally:
            follower.close()

    def _reached(self, targets: dict[int, int]) -> bool:
        return self._follower is not None and self._follower.positions.reached(targets)

    def _apply(self, follower: TableFollower, messages: list[Message]) -> None:
        with self._lock:
            for message in follower.apply(messages):
                key = message.key()
                if key is None:
                    log.warning("subscription record without key", partition=message.partition())
                else:
                    self._index.apply(key.decode(errors="replace"), message.value())
            SUBSCRIPTIONS.set(len(self._index))
            if not self._restored.is_set() and follower.restored:
                self._restored.set()
                log.info("subscription directory restored", subscriptions=len(self._index))
                if self._on_restored is not None:
                    self._on_restored()
            for waiter in [w for w in self._waiters if follower.positions.reached(w.targets)]:
                self._waiters.remove(waiter)
                with contextlib.suppress(RuntimeError):  # its loop has closed meanwhile
                    waiter.loop.call_soon_threadsafe(_release, waiter.future)


def _log_read_error(error: KafkaError) -> None:
    log.warning("reading subscriptions failed", error=error.str())
