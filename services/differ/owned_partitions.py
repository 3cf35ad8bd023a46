"""The input partitions the differ owns: restored on assign, forgotten on revoke, watched for lag.

The consumer's rebalance callbacks land here. They run only inside ``consume()``, while no
transaction is open (see :mod:`deltawatch.processing_core`), so a revoked partition's last batch
is already committed when its snapshot is dropped, and an assigned partition's snapshot is
restored *inside* ``on_assign``, before any of its records can be returned: from the local
state when that is current with the group's committed offset, else from the changelog.
Besides the snapshots this keeps, per owned partition, what readiness and the gauges need: when
it last produced output (heartbeats), how far it must read to be caught up, and its lag.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition
from structlog.stdlib import BoundLogger

from deltawatch.health import HealthState
from deltawatch.member_identity import refuse_foreign_assignment
from deltawatch.shutdown import ShutdownFlag
from services.differ import metrics
from services.differ.local_state import LocalStateDb
from services.differ.object_bodies import MemoryBodies, ObjectBodies
from services.differ.restore import RestoreResult, restore_from_local, restore_partitions
from services.differ.snapshot import SnapshotStore
from services.differ.unowned_state import UnownedState

LAG_EVERY_S = 5.0


@dataclass(eq=False)
class OwnedPartitions:
    topic: str
    changelog: str
    reader: Consumer
    health: HealthState
    shutdown: ShutdownFlag
    log: BoundLogger
    legacy_cluster: str
    """Whose resources the changelog records of the release without clusters hold (§10)."""
    local: LocalStateDb | None = None
    """Where objects and a copy of the changelog are kept (``DELTAWATCH_DIFFER_STATE_DIR``)."""
    state_cleanup_delay_s: float = field(kw_only=True)
    """How long local state of a partition no longer owned is kept for its return."""
    store: SnapshotStore = field(default_factory=SnapshotStore, init=False)
    assigned: set[int] = field(default_factory=set, init=False)
    catch_up: dict[int, int] | None = field(default=None, init=False)
    """Input end offsets found at the first assignment, until the position passes them."""
    last_output: dict[int, float] = field(default_factory=dict, init=False)
    resource_counts: dict[int, int] = field(default_factory=dict, init=False)
    _next_lag: float = field(default=0.0, init=False)
    unowned: UnownedState = field(init=False)

    def __post_init__(self) -> None:
        self.unowned = UnownedState(self.state_cleanup_delay_s)
        if self.local is not None:
            self.unowned.unowned(self.local.stored_partitions(), time.monotonic())
        self.refresh_gauges()

    # -- rebalance callbacks -----------------------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned = (tp.topic for tp in partitions)
        refuse_foreign_assignment(assigned, [self.topic], "DELTAWATCH_DIFFER_GROUP_ID")
        self.health.unmet("restored")
        self.unowned.owned(tp.partition for tp in partitions)
        committed = self._committed(consumer, partitions)
        self._restore([tp.partition for tp in partitions], committed)
        if self.catch_up is None:
            self.catch_up = self._end_offsets(consumer, partitions, committed)
        self.refresh_gauges()
        self.health.met("assigned")
        self.health.met("restored")

    def on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions, "revoked")

    def on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions, "lost")

    def at_end(self, _topic: str, partition: int) -> None:
        """End of an input partition reached: it is caught up."""
        if self.catch_up is not None:
            self.catch_up.pop(partition, None)

    def _restore(self, partitions: list[int], committed: dict[int, int]) -> None:
        """From local state where it is current with the committed offset, else the changelog."""
        results: list[RestoreResult] = []
        from_changelog: list[int] = []
        for partition in partitions:
            state = self.local.partition(partition) if self.local is not None else None
            offset = committed.get(partition, -1)
            if state is not None and offset >= 0 and state.input_offset() == offset:
                results.append(restore_from_local(state, partition, self.legacy_cluster))
                metrics.RESTORES.labels("local").inc()
            else:
                from_changelog.append(partition)
        from_local = [r.partition for r in results]
        restored = (
            restore_partitions(
                self.reader,
                self.changelog,
                from_changelog,
                legacy_cluster=self.legacy_cluster,
                stop_requested=lambda: self.shutdown.requested,
                bodies_for=self._fresh_bodies,
            )
            if from_changelog
            else []
        )
        for result in restored:
            # The state now goes with the committed offset, as the changelog read does.
            result.snapshot.bodies.flush(committed.get(result.partition))
            metrics.RESTORES.labels("changelog").inc()
        results.extend(restored)
        self._own(partitions, results, from_local)

    def _fresh_bodies(self, partition: int) -> ObjectBodies:
        return MemoryBodies() if self.local is None else self.local.fresh_partition(partition)

    def _own(
        self, partitions: list[int], results: list[RestoreResult], from_local: list[int]
    ) -> None:
        for result in results:
            self.store.put(result.partition, result.snapshot)
            self.resource_counts[result.partition] = result.snapshot.resource_count()
            self.assigned.add(result.partition)
            self.last_output[result.partition] = time.monotonic()
            metrics.RESTORED_RECORDS.inc(result.records)
        seconds = max((r.seconds for r in results), default=0.0)
        metrics.RESTORE_SECONDS.observe(seconds)
        self.log.info(
            "partitions restored",
            partitions=partitions,
            from_local=from_local,
            records=sum(r.records for r in results),
            resources=sum(r.snapshot.resource_count() for r in results),
            seconds=round(seconds, 3),
        )

    @staticmethod
    def _committed(consumer: Consumer, partitions: list[TopicPartition]) -> dict[int, int]:
        """The group's committed input offsets (negative: none)."""
        return {
            tp.partition: tp.offset
            for tp in consumer.committed(
                [TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=10
            )
        }

    @staticmethod
    def _end_offsets(
        consumer: Consumer, partitions: list[TopicPartition], committed: dict[int, int]
    ) -> dict[int, int]:
        """End offsets found at start, minus the partitions already committed up to them."""
        targets: dict[int, int] = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = committed.get(tp.partition, -1)
            if high > max(low, start):
                targets[tp.partition] = high
        return targets

    def _forget(self, partitions: list[TopicPartition], why: str) -> None:
        for tp in partitions:
            self.store.drop(tp.partition)
            self.assigned.discard(tp.partition)
            self.last_output.pop(tp.partition, None)
            if self.catch_up is not None:
                self.catch_up.pop(tp.partition, None)
            self.resource_counts.pop(tp.partition, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(str(tp.partition))
        if self.local is not None:
            self.unowned.unowned((tp.partition for tp in partitions), time.monotonic())
        self.refresh_gauges()
        self.log.info(why, partitions=[tp.partition for tp in partitions])

    # -- between batches ---------------------------------------------------------------------

    def add_resources(self, partition: int, added: int) -> None:
        self.resource_counts[partition] = self.resource_counts.get(partition, 0) + added

    def heartbeat_due(self, now: float, every_s: float) -> list[int]:
        """The owned partitions that produced nothing for ``every_s``, in order."""
        return [p for p in sorted(self.assigned) if now - self.last_output.get(p, now) >= every_s]

    def check_caught_up(self, consumer: Consumer) -> None:
        if self.catch_up is None:
            return
        if self.catch_up:
            positions = consumer.position([TopicPartition(self.topic, p) for p in self.catch_up])
            for tp in positions:
                if tp.offset >= self.catch_up.get(tp.partition, 0):
                    self.catch_up.pop(tp.partition, None)
        if not self.catch_up:
            self.health.met("caught-up")

    def observe_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now < self._next_lag or not self.assigned:
            return
        self._next_lag = now + LAG_EVERY_S
        tps = [TopicPartition(self.topic, p) for p in sorted(self.assigned)]
        for tp in consumer.position(tps):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, high - tp.offset))

    def drop_unowned_state(self) -> None:
        """Delete the local state of partitions not owned for ``state_cleanup_delay_s``."""
        if self.local is None:
            return
        due = self.unowned.due(time.monotonic())
        for partition in due:
            self.local.drop_partition(partition)
        if due:
            self.log.info(
                "local state of unowned partitions dropped",
                partitions=due,
                unowned_for_s=self.state_cleanup_delay_s,
            )
            self.refresh_gauges()

    def refresh_gauges(self) -> None:
        if self.local is not None:
            metrics.LOCAL_STATE_PARTITIONS.set(len(self.assigned | self.unowned.partitions()))
        metrics.TRACKED_RESOURCES.set(sum(self.resource_counts.values()))
        metrics.TRACKED_INSTANCES.set(self.store.instance_count())
        metrics.ASSIGNED_PARTITIONS.set(len(self.assigned))
