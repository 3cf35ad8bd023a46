"""What every worker does before its own loop: settings, logs, HTTP server, topics.

Kept in one place so that the three workers fail the same way on bad configuration (one line
naming the variable, exit code 2) and expose the same health endpoints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TypeVar

from confluent_kafka import KafkaException
from starlette.routing import BaseRoute

from deltawatch.health import HealthState
from deltawatch.http_server import HttpServer, build_app
from deltawatch.kafka_clients import make_admin
from deltawatch.logs import configure_logging, get_logger
from deltawatch.settings import CommonSettings, SettingsError, load_settings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import TopicSpec, ensure_topics

S = TypeVar("S", bound=CommonSettings)


def settings_or_exit(cls: type[S], worker: str) -> S:
    try:
        settings = load_settings(cls)
    except SettingsError as exc:
        print(f"deltawatch-{worker}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(worker, settings.log_level, settings.log_format)
    return settings


def start_http(
    settings: CommonSettings, health: HealthState, extra_routes: Sequence[BaseRoute] = ()
) -> HttpServer:
    server = HttpServer(build_app(health, extra_routes), settings.http_port)
    server.start_in_thread()
    return server


def create_topics_when_reachable(
    settings: CommonSettings,
    specs: list[TopicSpec],
    shutdown: ShutdownFlag,
    health: HealthState,
) -> bool:
    """Create missing topics, retrying while the broker is unreachable; ``False`` on shutdown."""
    log = get_logger("deltawatch.topics")
    admin = make_admin(settings)
    delay = 0.5
    while not shutdown.requested:
        health.beat()
        try:
            # A short probe first: an unreachable broker must not delay a SIGTERM by 10 s.
            admin.list_topics(timeout=2.0)
            ensure_topics(admin, specs, timeout_s=10.0)
            health.met("kafka")
            return True
        except (KafkaException, RuntimeError) as exc:
            log.warning("kafka not reachable yet", error=str(exc), retry_in_s=delay)
            shutdown.wait(delay)
            delay = min(delay * 2, 10.0)
    return False


def monotonic_s() -> float:
    return time.monotonic()
