"""What one notifier transaction writes, gathered while one turn of the loop is processed.

The rules (:mod:`services.notifier.rules`) never produce to Kafka: they append records to a
:class:`Turn` and mark which subscriptions' durable state changed. The loop writes the turn in
one transaction with the consumed offsets and only then starts the deliveries it names, so a
notification's webhook-id is durable before its first POST.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deltawatch.processing_core import OutputRecord
from services.notifier.cps.subscriptions import DataspaceSubscription
from services.notifier.delivery.deliveries import DeliveryJob


@dataclass
class Turn:
    """One transaction's writes; ``bool(turn)`` says whether there is anything to commit."""

    now: float
    """Epoch seconds of this turn: the clock the throttle windows are kept with."""
    records: list[OutputRecord] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dirty_outbox: set[str] = field(default_factory=set)
    """Targets whose outbox record (pending change, in flight, filter memory) must be written."""
    dirty_state: set[str] = field(default_factory=set)
    """Subscriptions whose state record (last notify time / status) must be written."""
    jobs: list[DeliveryJob] = field(default_factory=list)
    """Deliveries to start once the transaction is committed."""
    cancelled: list[str] = field(default_factory=list)
    """Subscriptions whose running delivery must stop now (deleted)."""
    cps_states: dict[str, DataspaceSubscription] | None = None
    """Every dataspace's CPS subscription as this turn sees it (computed once, on demand)."""

    def produce(self, topic: str, partition: int | None, key: str, value: bytes | None) -> None:
        self.records.append(OutputRecord(topic, partition, key.encode(), value))

    def __bool__(self) -> bool:
        return bool(self.records or self.offsets or self.dirty_outbox or self.dirty_state)


class TurnProducer:
    """The producer a :class:`CpsEventWriter` writes to: records join the turn's transaction.

    Stamped with the turn's clock, the one the throttle window is kept with, so the record
    timestamps of a lane's events are ``DELTAWATCH_CPS_MIN_NOTIFY_INTERVAL`` apart at least.
    """

    def __init__(self, turn: Turn) -> None:
        self._turn = turn

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        stamp = int(self._turn.now * 1000)
        self._turn.records.append(OutputRecord(topic, None, key, value, headers, stamp))

    def poll(self, timeout: float = 0.0) -> int:
        return 0
