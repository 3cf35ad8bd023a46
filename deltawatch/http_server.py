"""The worker HTTP server: ``/metrics``, ``/healthz``, ``/readyz`` (CONTRACT §1).

One ASGI app per worker so that the notifier can mount its REST facade next to the health
routes on the same port. Synchronous workers run it with uvicorn in a daemon thread; the
notifier runs it inside its own event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deltawatch.health import HealthState


def health_routes(health: HealthState, registry: CollectorRegistry = REGISTRY) -> list[BaseRoute]:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        alive = health.alive
        return JSONResponse({"alive": alive}, status_code=200 if alive else 503)

    async def readyz(_: Request) -> Response:
        ready = health.ready
        return JSONResponse(
            {"ready": ready, "waiting-for": health.pending, **health.details},
            status_code=200 if ready else 503,
        )

    return [
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]


def build_app(health: HealthState, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    return Starlette(routes=[*health_routes(health), *extra_routes])


class HttpServer:
    """uvicorn serving an ASGI app on ``0.0.0.0:port``; ``port`` 0 picks a free one."""

    def __init__(self, app: Starlette, port: int, host: str = "0.0.0.0") -> None:
        self._config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        for server in getattr(self.server, "servers", []):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._config.port)

    def start_in_thread(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self.server.started and waited < timeout_s:
            if not self._thread.is_alive():
                raise RuntimeError(f"HTTP server failed to start on port {self._config.port}")
            deadline.wait(0.02)
            waited += 0.02
        if not self.server.started:
            raise RuntimeError(f"HTTP server did not start within {timeout_s}s")

    async def serve(self) -> None:
        await self.server.serve()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


async def wait_started(server: HttpServer, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not server.server.started:
        if loop.time() > deadline:
            raise RuntimeError("HTTP server did not start")
        await asyncio.sleep(0.02)
