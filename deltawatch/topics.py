"""Which topics exist, with which layout, and creating the missing ones at start.

Topic layout is part of the contract (CONTRACT §3): everything keyed by instance-id shares
``DELTAWATCH_PARTITIONS`` so that one instance's events stay in one partition end to end, and
state topics are compacted so that a restore reads one record per key, not the full history.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from deltawatch.settings import CommonSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False

    def config(self) -> dict[str, str]:
        config = {"max.message.bytes": str(16 * 1024 * 1024)}
        if self.compacted:
            config.update(
                {
                    "cleanup.policy": "compact",
                    "min.compaction.lag.ms": "0",
                    "segment.ms": "3600000",
                }
            )
        return config


def contract_topics(settings: CommonSettings) -> dict[str, TopicSpec]:
    """Every topic of CONTRACT §3, by its role."""
    p = settings.partitions
    return {
        "commands": TopicSpec(settings.commands_topic, p),
        "command_results": TopicSpec(settings.command_results_topic, p),
        "subscriptions": TopicSpec(settings.subscriptions_topic, p, compacted=True),
        "resource_events": TopicSpec(settings.resource_events_topic, p),
        "deltas": TopicSpec(settings.deltas_topic, p),
        "cps": TopicSpec(settings.cps_topic, p),
        "dlq": TopicSpec(settings.dlq_topic, p),
    }


def changelog_topic(settings: CommonSettings, worker: str, store: str) -> TopicSpec:
    return TopicSpec(settings.changelog_topic(worker, store), settings.partitions, compacted=True)


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> None:
    """Create the topics in ``specs`` that do not exist yet; existing ones are left as they are."""
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config())
            for s in missing
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def partition_count(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> int:
    meta = admin.list_topics(topic=topic, timeout=timeout_s)
    return len(meta.topics[topic].partitions)
