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
replica owns, its own command table is newer still and wins (see ``NotifierRules.cps_states``); with
one replica the directory is never consulted. With several, a subscribe or unsubscribe takes
effect on the other replicas once they have fetched it — tens of milliseconds
(``fetch.wait.max.ms``); deltas handled in that window follow the previous state.

:class:`CpsDirectory` is the pure index; :class:`CpsDirectoryReader` feeds it from Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, Message
from prometheus_client import Gauge

from deltawatch.compacted_table import TableFollower, TableReadTimeout
from deltawatch.kafka_clients import make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import CommonSettings
from services.notifier.cps import subscriptions as cps_subscriptions
from services.notifier.cps.subscriptions import DataspaceSubscription

DATASPACES = Gauge(
    "deltawatch_notifier_cps_dataspaces",
    "Dataspaces with a CPS delta-notification subscription (all partitions).",
)

log = get_logger("notifier.cps.directory")


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
        self._follower: TableFollower | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Assign every partition from the beginning and read to the end offsets found now.

        Blocking: call it from a worker thread, before the worker consumes deltas.
        """
        reader = make_reader(self._settings, client_id="deltawatch-notifier-cps-directory")
        follower = TableFollower(reader, self._topic, _log_read_error)
        self._follower = follower
        follower.start()
        try:
            follower.read_restore(timeout_s, self._apply)
        except TableReadTimeout as exc:
            raise TimeoutError(f"CPS directory: {exc}") from None
        log.info("CPS directory restored", dataspaces=len(self.directory))

    def drain(self) -> int:
        """Apply what the reader has fetched so far, without waiting; returns records read."""
        if self._follower is None:
            return 0
        count = 0
        while True:
            messages = self._follower.reader.consume(num_messages=500, timeout=0)
            if not messages:
                return count
            self._apply(self._follower.apply(messages))
            count += len(messages)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
            self._follower = None

    def _apply(self, records: list[Message]) -> None:
        for message in records:
            raw_key = message.key()
            if raw_key is not None:
                key = raw_key.decode("utf-8", errors="replace")
                self.directory.apply(key, message.partition() or 0, message.value())
                DATASPACES.set(len(self.directory))


def _log_read_error(error: KafkaError) -> None:
    log.warning("reading CPS subscriptions failed", error=error.str())
