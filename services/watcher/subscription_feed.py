"""Read the compacted subscriptions topic so the watcher knows every subscription's extra kinds.

The watcher is not a member of any consumer group here: every watcher replica needs *all*
subscriptions, not a share of them, so it assigns itself every partition from the beginning
and reads on for ever. "Caught up" (part of readiness, CONTRACT §1) means every partition
was read up to the end offsets found when the feed was assigned
(:class:`deltawatch.compacted_table.TableFollower`), so the watches started at boot already
include the extra kinds of subscriptions that existed then. A record that is not a usable
subscription is logged and skipped; it never stops the watcher.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from deltawatch.compacted_table import TableFollower
from deltawatch.kafka_clients import make_reader
from deltawatch.logs import get_logger
from deltawatch.settings import WatcherSettings
from services.watcher.kinds import InvalidSubscription, SubscriptionKinds


class SubscriptionFeed:
    def __init__(self, settings: WatcherSettings, kinds: SubscriptionKinds) -> None:
        self.topic = settings.subscriptions_topic
        self.kinds = kinds
        self.log = get_logger("watcher.subscriptions")
        self.follower = TableFollower(
            make_reader(settings, client_id="deltawatch-watcher-subs"), self.topic, self._read_error
        )
        self.caught_up = False

    def assign(self) -> None:
        """Assign every partition; fails at once while the topic is not readable yet (the
        caller retries, beating its health meanwhile)."""
        self.follower.start(timeout_s=0)

    def poll(self, timeout_s: float, max_records: int = 500) -> bool:
        """Apply what arrived; True when the set of extra kinds may have changed."""
        changed = False
        for message in self.follower.poll(max_records, timeout_s):
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
        if not self.caught_up and self.follower.restored:
            self.caught_up = True
            self.log.info("subscriptions read to the end", kinds=self._kinds_text())
            changed = True
        return changed

    def _read_error(self, error: KafkaError) -> None:
        self.log.warning("subscriptions topic read error", error=error.str())

    def _kinds_text(self) -> list[str]:
        return sorted(str(k) for k in self.kinds.kinds())

    def close(self) -> None:
        self.follower.close()
