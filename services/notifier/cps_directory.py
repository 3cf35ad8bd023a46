"""Every dataspace's CPS subscription, on every notifier replica: a read model of ``cps/`` keys.

CPS commands are keyed by dataspace, deltas by instance-id, so a dataspace's state
(``cps/<dataspace>`` on the subscriptions topic, partition ``p(dataspace)``) and the deltas of
the anchors it subscribes (partition ``p(anchor)``) usually belong to different replicas. The
replica that consumes an anchor's deltas must still know every dataspace's wish. So each
replica keeps this small directory: a group-less ``read_committed`` reader assigned EVERY
partition of the subscriptions topic from the beginning, keeping only ``cps/`` records.

Freshness: the worker reads the directory to its end offsets before it consumes anything (so
a started replica routes with every committed subscription), then takes what the reader has
fetched at the start of every loop turn. For dataspaces whose state lives on partitions the
replica owns, its own command table is newer still and wins (see ``NotifierWorker``); with
one replica the directory is never consulted. With several, a subscribe or unsubscribe takes
effect on the other replicas once they have fetched it — tens of milliseconds
(``fetch.wait.max.ms``); deltas handled in that window follow the previous state.

:class:`CpsDirectory` is the pure index; :class:`CpsDirectoryReader` feeds it from Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from prometheus_client import Gauge

from deltawatch.kafka_clients import FETCH_WAIT_MS, end_offsets, make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import CommonSettings
from services.notifier import cps_subscriptions
from services.notifier.cps_subscriptions import DataspaceSubscription

DATASPACES = Gauge(
    "deltawatch_notifier_cps_dataspaces",
    "Dataspaces with a CPS delta-notification subscription (all partitions).",
)

log = get_logger("notifier.cps_directory")


class CpsDirectory:
    """Dataspace → (partition of its ``cps/`` record, state), from subscriptions-topic records."""

    def __init__(self) -> None:
        self._states: dict[str, tuple[int, DataspaceSubscription]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def apply(self, key: str, partition: int, value: bytes | None) -> None:
        """One record; keys other than ``cps/<dataspace>`` are ignored, bad values logged."""
        dataspace = cps_subscriptions.dataspace_of_key(key)
        if dataspace is None:
            return
        try:
            state = cps_subscriptions.decode_state(key, value)
        except cps_subscriptions.CpsStateDecodeError as exc:
            log.error("unreadable CPS subscription state skipped", key=key, error=str(exc))
            return
        if state is None:
            self._states.pop(dataspace, None)
        else:
            self._states[dataspace] = (partition, state)

    def outside(self, partitions: Iterable[int]) -> dict[str, DataspaceSubscription]:
        """The states whose records live on partitions other than ``partitions``."""
        owned = set(partitions)
        return {name: state for name, (p, state) in self._states.items() if p not in owned}


class CpsDirectoryReader:
    """Feeds a :class:`CpsDirectory` from all partitions of the subscriptions topic."""

    def __init__(self, settings: CommonSettings, directory: CpsDirectory) -> None:
        self._settings = settings
        self._topic = settings.subscriptions_topic
        self.directory = directory
        self._reader: Consumer | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Assign every partition from the beginning and read to the end offsets found now.

        Blocking: call it from a worker thread, before the worker consumes deltas.
        """
        reader = make_reader(
            self._settings,
            client_id="deltawatch-notifier-cps-directory",
            **{"fetch.wait.max.ms": FETCH_WAIT_MS},
        )
        self._reader = reader
        targets = end_offsets(reader, self._topic)
        reader.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in sorted(targets)])
        positions: dict[int, int] = {}
        pending = {p for p, end in targets.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"CPS directory: {self._topic} {sorted(pending)} not read")
            message = reader.poll(0.5)
            if message is None:
                continue
            self._apply(message, positions)
            pending = {p for p in pending if positions.get(p, 0) < targets[p]}
        log.info("CPS directory restored", dataspaces=len(self.directory))

    def drain(self) -> int:
        """Apply what the reader has fetched so far, without waiting; returns records read."""
        if self._reader is None:
            return 0
        count = 0
        while True:
            messages = self._reader.consume(num_messages=500, timeout=0)
            if not messages:
                return count
            positions: dict[int, int] = {}
            for message in messages:
                self._apply(message, positions)
            count += len(messages)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _apply(self, message: Message, positions: dict[int, int]) -> None:
        partition = message.partition() or 0
        offset = message.offset() or 0
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                positions[partition] = max(positions.get(partition, 0), offset)
            else:
                log.warning("reading CPS subscriptions failed", error=error.str())
            return
        positions[partition] = max(positions.get(partition, 0), offset + 1)
        raw_key = message.key()
        if raw_key is not None:
            key = raw_key.decode("utf-8", errors="replace")
            self.directory.apply(key, partition, message.value())
            DATASPACES.set(len(self.directory))
