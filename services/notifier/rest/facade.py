"""The facade's routes and its two Kafka edges: the command waiter and the directory.

The only module of the facade that does I/O. Each route is a thin step: translate the request
(:mod:`.translation`), send a command through the command waiter or wait for the subscription
directory to catch up, and map the outcome to HTTP; every failure of an edge becomes an
:class:`~.errors.ApiError`. Routes answer 503 ``not-ready`` until :meth:`RestFacade.start`
(after the caller's token and verb were checked when ``DELTAWATCH_API_AUTH=kubernetes``,
:mod:`.access_review`), and every answer is counted and timed by route template, so the
metrics stay low-cardinal.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deltawatch.command_client import CommandTimeoutError
from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from services.notifier.command_waiter import CommandNotProducedError, CommandWaiter
from services.notifier.rest.access_review import AccessReview, verb_of
from services.notifier.rest.errors import ApiError, not_found
from services.notifier.rest.openapi import openapi_document
from services.notifier.rest.translation import shown, status_of_rejection, subscription_from_body
from services.notifier.subscription_directory import DirectoryLagError, SubscriptionDirectory

MAX_BODY_BYTES = 1024 * 1024
HEALTH_CONDITION = "rest-api"

REQUESTS = Counter(
    "deltawatch_notifier_rest_requests_total",
    "REST facade requests by route, method and HTTP status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "deltawatch_notifier_rest_request_seconds",
    "REST facade request latency by route and method (writes include the command round trip).",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# The logger keeps the name it had before the facade became a package: log queries use it.
log = get_logger("notifier.rest")


Handler = Callable[[Request], Awaitable[Response]]


class RestFacade:
    """The five routes of CONTRACT §9 and ``/openapi.json``, plus their Kafka edges.

    Mount :attr:`routes` on the notifier's HTTP app, call :meth:`start` once the topics
    exist, :meth:`stop` at shutdown. Until started, the routes answer 503 ``not-ready``.
    """

    def __init__(self, settings: NotifierSettings, health: HealthState | None = None) -> None:
        self._settings = settings
        self._health = health
        self._waiter = CommandWaiter(settings)
        self._directory = SubscriptionDirectory(settings)
        self._access = AccessReview.from_settings(settings)
        self._started = False
        if health is not None:
            health.unmet(HEALTH_CONDITION)
        base = "/v1/instance/{instID}/status/subscription"
        self.routes: list[BaseRoute] = [
            Route(base, self._timed(base, self._list), methods=["GET"]),
            Route(base, self._timed(base, self._create), methods=["POST"]),
            Route(
                f"{base}/{{subID}}", self._timed(f"{base}/{{subID}}", self._get), methods=["GET"]
            ),
            Route(
                f"{base}/{{subID}}", self._timed(f"{base}/{{subID}}", self._update), methods=["PUT"]
            ),
            Route(
                f"{base}/{{subID}}",
                self._timed(f"{base}/{{subID}}", self._delete),
                methods=["DELETE"],
            ),
            Route("/openapi.json", self._openapi, methods=["GET"]),
        ]

    @property
    def ready(self) -> bool:
        return self._started and self._waiter.ready and self._directory.ready

    def start(self) -> None:
        """Position the results reader and start restoring the directory (topics must exist)."""
        self._waiter.start()
        self._directory.start(on_restored=self._restored)
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._directory.stop()
            self._waiter.stop()
        if self._health is not None:
            self._health.unmet(HEALTH_CONDITION)

    def _restored(self) -> None:
        if self._health is not None:
            self._health.met(HEALTH_CONDITION)

    # -- routes ------------------------------------------------------------------------------

    def _timed(self, route: str, handler: Handler) -> Handler:
        verbs = {method: verb_of(route, method) for method in ("GET", "POST", "PUT", "DELETE")}

        async def timed(request: Request) -> Response:
            started = time.perf_counter()
            denied = None
            if self._access is not None:  # DELTAWATCH_API_AUTH=kubernetes
                denied = await self._access.check(request, verbs[request.method])
            if denied is not None:
                response: Response = denied
            elif not self._started:
                response = ApiError(
                    503, "not-ready", "the notifier is still connecting to Kafka"
                ).response()
            else:
                response = await handler(request)
            REQUEST_SECONDS.labels(route, request.method).observe(time.perf_counter() - started)
            REQUESTS.labels(route, request.method, str(response.status_code)).inc()
            return response

        return timed

    async def _openapi(self, _: Request) -> Response:
        return JSONResponse(openapi_document())

    async def _list(self, request: Request) -> Response:
        instance_id = request.path_params["instID"]
        if (lag := await self._caught_up()) is not None:
            return lag.response()
        return JSONResponse([shown(s) for s in self._directory.of_instance(instance_id)])

    async def _get(self, request: Request) -> Response:
        instance_id, name = request.path_params["instID"], request.path_params["subID"]
        if (lag := await self._caught_up()) is not None:
            return lag.response()
        found = self._directory.get(instance_id, name)
        if found is None:
            return not_found(instance_id, name).response()
        return JSONResponse(shown(found))

    async def _create(self, request: Request) -> Response:
        return await self._upsert(request, "create", None, 201)

    async def _update(self, request: Request) -> Response:
        return await self._upsert(request, "update", request.path_params["subID"], 200)

    async def _upsert(
        self, request: Request, action: str, path_name: str | None, success: int
    ) -> Response:
        instance_id = request.path_params["instID"]
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return ApiError(413, "too-large", f"body exceeds {MAX_BODY_BYTES} bytes").response()
        subscription = subscription_from_body(raw, instance_id, path_name)
        if isinstance(subscription, ApiError):
            return subscription.response()
        command = {"action": action, "instance-id": instance_id, "subscription": subscription}
        outcome = await self._send(command, instance_id, str(subscription["name"]))
        if isinstance(outcome, Response):
            return outcome
        state = outcome.get("subscription")
        if not isinstance(state, dict):
            # A core that does not echo the state: read it back (it was committed with the
            # result, so the directory has it once caught up).
            if (lag := await self._caught_up()) is not None:
                return lag.response()
            state = self._directory.get(instance_id, str(subscription["name"]))
            if state is None:
                return not_found(instance_id, str(subscription["name"])).response()
        return JSONResponse(shown(state), status_code=success)

    async def _delete(self, request: Request) -> Response:
        instance_id, name = request.path_params["instID"], request.path_params["subID"]
        command = {"action": "delete", "instance-id": instance_id, "subscription-name": name}
        outcome = await self._send(command, instance_id, name)
        if isinstance(outcome, Response):
            return outcome
        return Response(status_code=202)

    # -- edges -------------------------------------------------------------------------------

    async def _caught_up(self) -> ApiError | None:
        try:
            await self._directory.catch_up(self._settings.api_timeout_s)
        except DirectoryLagError as exc:
            return ApiError(504, "timeout", str(exc))
        except KafkaException as exc:
            log.warning("reading end offsets failed", error=str(exc))
            return ApiError(503, "kafka-unavailable", f"end offsets not readable: {exc}")
        return None

    async def _send(
        self, command: dict[str, Any], instance_id: str, name: str
    ) -> dict[str, Any] | Response:
        """The command's accepted result, or the HTTP answer to give instead."""
        bound = log.bind(**{"instance-id": instance_id, "subscription": name})
        try:
            command_id, result = await self._waiter.send(command, self._settings.api_timeout_s)
        except CommandTimeoutError as exc:
            bound.warning("command result timed out", command_id=exc.command_id)
            return ApiError(
                504,
                "timeout",
                f"no result for command {exc.command_id} within "
                f"{self._settings.api_timeout_s:g}s; it may still be applied: look for its "
                "result on the command results topic",
                {"command-id": exc.command_id},
            ).response()
        except CommandNotProducedError as exc:
            bound.warning("command not produced", error=str(exc))
            return ApiError(503, "kafka-unavailable", str(exc)).response()
        if result.get("status") == "accepted":
            bound.info("command accepted", action=command["action"], command_id=command_id)
            return result
        error = result.get("error")
        if not isinstance(error, dict):
            error = {}
        code = str(error.get("code") or "rejected")
        message = str(error.get("message") or "the command was rejected")
        bound.info("command rejected", action=command["action"], code=code, command_id=command_id)
        return ApiError(
            status_of_rejection(code), code, message, {"command-id": command_id}
        ).response()
