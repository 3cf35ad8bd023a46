"""Entry point of ``deltawatch-notifier`` / ``python -m services.notifier``.

The worker loop and the HTTP server (health, metrics, and later the REST facade) share one
asyncio event loop, so HTTP handlers can read the restored subscription table directly.
uvicorn captures SIGTERM while it serves and re-raises it when it stops; the worker loop
watches both uvicorn's exit flag and :class:`ShutdownFlag`, finishes the turn it is in
(its transaction commits or was never begun), cancels deliveries (they stay in the outbox)
and returns.
"""

from __future__ import annotations

import asyncio
import sys

from confluent_kafka import KafkaException

from deltawatch.compacted_table import wait_for_leaders
from deltawatch.health import HealthState
from deltawatch.http_server import HttpServer, build_app
from deltawatch.logs import get_logger
from deltawatch.member_identity import ForeignAssignment, IdentityInUse
from deltawatch.processing_core import FatalKafkaError, TransactionAbandoned
from deltawatch.settings import NotifierSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.worker_boot import create_topics_when_reachable, settings_or_exit
from services.notifier.rest.facade import RestFacade
from services.notifier.worker import NotifierWorker, notifier_topics

READINESS = ["kafka", "assigned", "restored", "caught-up"]


async def serve(settings: NotifierSettings, shutdown: ShutdownFlag) -> None:
    health = HealthState(READINESS)
    rest = RestFacade(settings, health)
    http = HttpServer(build_app(health, rest.routes), settings.http_port)

    def stopping() -> bool:
        return shutdown.requested or http.server.should_exit

    worker = NotifierWorker(settings, health, stopping)
    server = asyncio.create_task(http.serve(), name="http")
    try:
        reachable = await asyncio.to_thread(
            create_topics_when_reachable, settings, notifier_topics(settings), shutdown, health
        )
        if reachable and not stopping():
            names = [topic.name for topic in notifier_topics(settings)]
            await asyncio.to_thread(
                wait_for_leaders, settings, names, client_id="deltawatch-notifier-probe"
            )
            await asyncio.to_thread(rest.start)
            await worker.run()
    finally:
        await asyncio.to_thread(rest.stop)
        health.stopping()
        http.server.should_exit = True
        await server


def main() -> None:
    settings = settings_or_exit(NotifierSettings, "notifier")
    shutdown = ShutdownFlag().install()
    log = get_logger("notifier")
    try:
        asyncio.run(serve(settings, shutdown))
    except (FatalKafkaError, TransactionAbandoned) as exc:
        # fenced, fatal, or a transaction that could not commit: the rules ran ahead of Kafka,
        # and only a restart (which restores the committed state) is correct
        log.error("notifier stopped on a Kafka error, exiting", error=str(exc))
        sys.exit(1)
    except KafkaException as exc:
        log.error("notifier stopped on a Kafka error", error=str(exc), exc_info=True)
        sys.exit(1)
    except IdentityInUse as exc:
        print(f"deltawatch-notifier: {exc}", file=sys.stderr)
        sys.exit(2)
    except ForeignAssignment as exc:
        log.error("assignment of other topics, exiting", error=str(exc))
        sys.exit(2)
    log.info("notifier stopped", signal=shutdown.signal_name)


if __name__ == "__main__":
    main()
