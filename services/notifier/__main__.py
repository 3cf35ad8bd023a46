"""Entry point of ``deltawatch-notifier`` / ``python -m services.notifier``."""

from __future__ import annotations

from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import contract_topics
from deltawatch.worker_boot import create_topics_when_reachable, settings_or_exit, start_http


def main() -> None:
    settings = settings_or_exit(NotifierSettings, "notifier")
    shutdown = ShutdownFlag().install()
    health = HealthState(["kafka"])
    http = start_http(settings, health)
    log = get_logger("notifier")
    topics = contract_topics(settings)
    if create_topics_when_reachable(settings, list(topics.values()), shutdown, health):
        log.info("notifier ready", port=http.port)
    while not shutdown.wait(1.0):
        health.beat()
    health.stopping()
    log.info("notifier stopped", signal=shutdown.signal_name)
    http.stop()


if __name__ == "__main__":
    main()
