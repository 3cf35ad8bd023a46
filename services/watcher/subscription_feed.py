"""Read the compacted subscriptions topic so the watcher knows every subscription's extra kinds.

The watcher is not a member of any consumer group here: every watcher replica needs *all*
subscriptions, not a share of them, so it assigns itself every partition from the beginning
and reads on for ever. "Caught up" (part of readiness, CONTRACT §1) means every partition
reported end-of-partition once, so the watches started at boot already include the extra kinds
of subscriptions that existed then. A record that is not a usable subscription is logged and
skipped; it never stops the watcher.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from deltawatch.kafka_clients import make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import WatcherSettings
from services.watcher.kinds import InvalidSubscription, SubscriptionKinds


class SubscriptionFeed:
    def __init__(self, settings: WatcherSettings, kinds: SubscriptionKinds) -> None:
        self.topic = settings.subscriptions_topic
        self.kinds = kinds
        self.log = get_logger("watcher.subscriptions")
        self.consumer: Consumer = make_reader(settings, client_id="deltawatch-watcher-subs")
        self._at_end: set[int] = set()
        self._partitions: set[int] = set()
        self.caught_up = False

    def assign(self, timeout_s: float = 10.0) -> None:
        meta = self.consumer.list_topics(self.topic, timeout=timeout_s)
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        self._partitions = set(topic.partitions)
        self.consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(self._partitions)]
        )

    def poll(self, timeout_s: float, max_records: int = 500) -> bool:
        """Apply what arrived; True when the set of extra kinds may have changed."""
        changed = False
        for message in self.consumer.consume(max_records, timeout_s):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(int(message.partition() or 0))
                    if not self.caught_up and self._at_end >= self._partitions:
                        self.caught_up = True
                        self.log.info("subscriptions read to the end", kinds=self._kinds_text())
                        changed = True
                else:
                    self.log.warning("subscriptions topic read error", error=error.str())
                continue
            raw_key = message.key()
            key = raw_key.decode(errors="replace") if raw_key else ""
            value = message.value()
            before = self.kinds.kinds()
            try:
                self.kinds.apply(key, value)
            except InvalidSubscription as exc:
                self.log.warning(
                    "subscription value ignored",
                    subscription=key,
                    offset=message.offset(),
                    partition=message.partition(),
                    error=str(exc),
                )
            if self.kinds.kinds() != before:
                changed = True
        return changed

    def _kinds_text(self) -> list[str]:
        return sorted(str(k) for k in self.kinds.kinds())

    def close(self) -> None:
        self.consumer.close()
