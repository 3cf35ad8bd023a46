"""Entry point of ``deltawatch-watcher`` / ``python -m services.watcher``."""

from __future__ import annotations

from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from deltawatch.settings import WatcherSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import contract_topics
from deltawatch.worker_boot import create_topics_when_reachable, settings_or_exit, start_http


def main() -> None:
    settings = settings_or_exit(WatcherSettings, "watcher")
    shutdown = ShutdownFlag().install()
    health = HealthState(["kafka"])
    http = start_http(settings, health)
    log = get_logger("watcher")
    topics = contract_topics(settings)
    if create_topics_when_reachable(
        settings, [topics["resource_events"], topics["subscriptions"]], shutdown, health
    ):
        log.info("watcher ready", port=http.port)
    while not shutdown.wait(1.0):
        health.beat()
    health.stopping()
    log.info("watcher stopped", signal=shutdown.signal_name)
    http.stop()


if __name__ == "__main__":
    main()
