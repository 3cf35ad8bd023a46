"""Entry point of ``deltawatch-differ`` / ``python -m services.differ``."""

from __future__ import annotations

from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from deltawatch.settings import DifferSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import contract_topics
from deltawatch.worker_boot import create_topics_when_reachable, settings_or_exit, start_http


def main() -> None:
    settings = settings_or_exit(DifferSettings, "differ")
    shutdown = ShutdownFlag().install()
    health = HealthState(["kafka"])
    http = start_http(settings, health)
    log = get_logger("differ")
    topics = contract_topics(settings)
    if create_topics_when_reachable(
        settings, [topics["resource_events"], topics["deltas"]], shutdown, health
    ):
        log.info("differ ready", port=http.port)
    while not shutdown.wait(1.0):
        health.beat()
    health.stopping()
    log.info("differ stopped", signal=shutdown.signal_name)
    http.stop()


if __name__ == "__main__":
    main()
