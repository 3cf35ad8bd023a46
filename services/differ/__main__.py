"""Entry point of ``deltawatch-differ`` / ``python -m services.differ``.

Creates the topics the differ needs and checks their layout before any record is read: the
changelog and the deltas topic must have exactly the input's partition count, because state
and output of input partition *p* live in partition *p* of each (CONTRACT §3) — a mismatch
would silently mix instances, so it stops the worker at start instead.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka.admin import AdminClient

from deltawatch.health import HealthState
from deltawatch.kafka_clients import make_admin
from deltawatch.logs import get_logger
from deltawatch.member_claim import claim_worker_member
from deltawatch.member_identity import IdentityInUse
from deltawatch.settings import DifferSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import TopicSpec, changelog_topic, contract_topics, ensure_topics
from deltawatch.topics import partition_count as topic_partitions
from deltawatch.worker_boot import create_topics_when_reachable, settings_or_exit, start_http
from services.differ.local_state import LocalStateError
from services.differ.transaction_loop import READINESS, DifferLoop, DifferTopics, member_id_base


def differ_topics(settings: DifferSettings) -> DifferTopics:
    changelog = (
        settings.snapshots_changelog_topic or changelog_topic(settings, "differ", "snapshots").name
    )
    return DifferTopics(
        resource_events=settings.resource_events_topic,
        deltas=settings.deltas_topic,
        changelog=changelog,
        dlq=settings.differ_dlq_topic,
    )


def _partitions(admin: AdminClient, topic: str, timeout_s: float = 30.0) -> int:
    """The topic's partition count, waiting out metadata propagation after a create."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = topic_partitions(admin, topic)
        if found > 0 or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def prepare_topics(settings: DifferSettings, topics: DifferTopics) -> str | None:
    """Create the changelog like the input; a message when the layout is unusable."""
    admin = make_admin(settings)
    partitions = _partitions(admin, topics.resource_events)
    ensure_topics(admin, [TopicSpec(topics.changelog, partitions, compacted=True)])
    for name in (topics.changelog, topics.deltas):
        found = _partitions(admin, name)
        if found != partitions:
            return (
                f"topic {name} has {found} partitions but {topics.resource_events} has "
                f"{partitions}; they must be equal"
            )
    return None


def _run_loop(
    settings: DifferSettings,
    topics: DifferTopics,
    health: HealthState,
    shutdown: ShutdownFlag,
    port: int,
) -> int:
    """Claim the member id, then process until shutdown; the exit code."""
    try:
        identity = claim_worker_member(
            settings,
            settings.group_id,
            base=member_id_base(settings),
            explicit=settings.transactional_id,
            stop_requested=lambda: shutdown.requested,
        )
    except IdentityInUse as exc:
        print(f"deltawatch-differ: {exc}", file=sys.stderr)
        return 2
    try:
        loop = DifferLoop(settings, topics, health, shutdown, identity.id)
        get_logger("differ").info("differ starting", port=port, transactional_id=identity.id)
        return loop.run()
    except LocalStateError as exc:
        print(f"deltawatch-differ: {exc}", file=sys.stderr)
        return 2
    finally:
        identity.release()


def main() -> None:
    settings = settings_or_exit(DifferSettings, "differ")
    shutdown = ShutdownFlag().install()
    health = HealthState(list(READINESS))
    http = start_http(settings, health)
    log = get_logger("differ")
    topics = differ_topics(settings)
    contract = contract_topics(settings)
    specs = [
        contract["resource_events"],
        contract["deltas"],
        TopicSpec(topics.dlq, settings.partitions),
    ]
    code = 0
    if create_topics_when_reachable(settings, specs, shutdown, health):
        problem = prepare_topics(settings, topics)
        if problem is not None:
            print(f"deltawatch-differ: {problem}", file=sys.stderr)
            code = 2
        else:
            code = _run_loop(settings, topics, health, shutdown, http.port)
    health.stopping()
    log.info("differ stopped", signal=shutdown.signal_name, exit_code=code)
    http.stop()
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
