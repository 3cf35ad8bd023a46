"""The seed-compatible REST facade of the notifier (CONTRACT §9), over the Kafka commands.

Clients of the k8splugin status-subscription API (the SO CNF adapter among them) must be able
to point at deltawatch by changing a URL, so routes, bodies and status codes are the seed's:
the seed's handlers decoded the body first (empty → 400, undecodable or wrongly typed → 422),
then checked name, interval and callback URL (400). Two deliberate departures, documented in
the OpenAPI description: "not found" is 404 and "already exists" 409 where the seed said 500.

Nothing here decides whether a subscription may exist. Writes become commands on the
commands topic (:mod:`services.notifier.command_waiter`), and the notifier core's result is
translated to HTTP; reads come from :mod:`services.notifier.subscription_directory`, after it
caught up with the topic. That is what lets any replica answer any request.

:func:`subscription_from_body` and :func:`status_of_rejection` are the pure translation,
tested without a server; :class:`RestFacade` owns the routes and the two Kafka edges.
``python -m services.notifier.rest_api`` rewrites ``schemas/openapi.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deltawatch.command_client import CommandTimeoutError
from deltawatch.health import HealthState
from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from services.notifier.command_waiter import CommandNotProducedError, CommandWaiter
from services.notifier.commands import SubscriptionRequest
from services.notifier.subscription_directory import (
    SECRET_FIELDS,
    DirectoryLagError,
    SubscriptionDirectory,
)
from services.notifier.subscription_state import SubscriptionState

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"
MAX_BODY_BYTES = 1024 * 1024
INT32 = (-(2**31), 2**31 - 1)
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

log = get_logger("notifier.rest_api")


@dataclass(frozen=True)
class ApiError:
    """An HTTP error answer: ``{"error": {"code", "message", ...extra}}``."""

    status: int
    code: str
    message: str
    extra: dict[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return JSONResponse(body, status_code=self.status)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_string_or_null(value: object) -> bool:
    return value is None or isinstance(value, str)


def subscription_from_body(
    raw: bytes, instance_id: str, path_name: str | None = None
) -> dict[str, Any] | ApiError:
    """A request body → the ``subscription`` of a create (``path_name`` None) or update command.

    Follows the seed's handlers: Go's decoder turned ``null`` fields into zero values and
    refused wrongly typed ones (422) before the handler checked name, interval and callback
    URL (400). Everything else (URL syntax, limits, the optional fields) is the notifier
    core's to judge, so Kafka and REST clients get the same answers.
    """
    if not raw.strip():
        return ApiError(400, "empty-body", "Empty body")
    try:
        document = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return ApiError(422, "malformed-json", f"body is not valid JSON: {exc}")
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return ApiError(422, "malformed-json", "body must be a JSON object")
    for name in ("name", "callback-url", "instance-id"):
        if not _is_string_or_null(document.get(name)):
            return ApiError(422, "invalid-field", f"{name}: must be a string")
    interval = document.get("min-notify-interval")
    if interval is not None and (
        isinstance(interval, bool)
        or not isinstance(interval, int)
        or not INT32[0] <= interval <= INT32[1]
    ):
        return ApiError(422, "invalid-field", "min-notify-interval: must be a 32-bit integer")
    if not isinstance(document.get("metadata", {}), dict | None):
        return ApiError(422, "invalid-field", "metadata: must be a JSON object")

    body_instance = document.pop("instance-id", None)
    if body_instance is not None and body_instance != instance_id:
        return ApiError(
            400,
            "invalid-field",
            f"instance-id {body_instance!r} in the body differs from {instance_id!r} in the path",
        )
    subscription = {
        **document,
        "name": document.get("name") or "",
        "callback-url": document.get("callback-url") or "",
        "min-notify-interval": interval or 0,
        "metadata": document.get("metadata") or {},
    }
    if path_name is not None:
        if "name" not in document or document["name"] is None:
            subscription["name"] = path_name
        elif document["name"] != path_name:
            return ApiError(
                400,
                "invalid-name",
                f"name {document['name']!r} in the body differs from {path_name!r} in the path",
            )
    if not subscription["name"]:
        return ApiError(400, "invalid-name", "Missing name in the request")
    if subscription["min-notify-interval"] < 0:
        return ApiError(400, "invalid-interval", "Min Notify Interval has invalid value")
    if not subscription["callback-url"]:
        return ApiError(400, "invalid-url", "CallbackUrl has invalid value")
    return subscription


def status_of_rejection(code: str) -> int:
    """The HTTP status of a rejected command (the seed said 500 for the first two)."""
    return {"not-found": 404, "already-exists": 409}.get(code, 400)


def _shown(subscription: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in subscription.items() if k not in SECRET_FIELDS}


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
        async def timed(request: Request) -> Response:
            started = time.perf_counter()
            if not self._started:
                response: Response = ApiError(
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
        return JSONResponse([_shown(s) for s in self._directory.of_instance(instance_id)])

    async def _get(self, request: Request) -> Response:
        instance_id, name = request.path_params["instID"], request.path_params["subID"]
        if (lag := await self._caught_up()) is not None:
            return lag.response()
        found = self._directory.get(instance_id, name)
        if found is None:
            return _not_found(instance_id, name).response()
        return JSONResponse(_shown(found))

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
                return _not_found(instance_id, str(subscription["name"])).response()
        return JSONResponse(_shown(state), status_code=success)

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


def _not_found(instance_id: str, name: str) -> ApiError:
    return ApiError(
        404, "not-found", f"subscription {name!r} of instance {instance_id!r} does not exist"
    )


# -- the OpenAPI document -------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Machine-readable reason: the command result's code (invalid-url, "
        "forbidden-network, invalid-secret, already-exists, not-found …) or one of the "
        "facade's own: empty-body, malformed-json, invalid-field, invalid-name, "
        "invalid-interval, too-large, timeout, not-ready, kafka-unavailable."
    )
    message: str
    command_id: str | None = Field(
        None,
        alias="command-id",
        description="The command that was produced, when there was one (always on a write "
        "timeout, so the result can be looked up on the results topic later).",
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


DESCRIPTION = """\
The k8splugin status-subscription API (ONAP multicloud-k8s), served by deltawatch's notifier.

Writes are commands on the Kafka commands topic: the facade produces the command and waits
for its result (at most DELTAWATCH_API_TIMEOUT_S; on timeout 504 with the command-id, and the
command may still be applied). Reads wait until this replica's copy of the subscriptions topic
has caught up with it, so any replica answers any request and a client reads its own writes.

Differences from the original API:
- "not found" answers 404 and "already exists" 409, where the original answered 500.
- Every error body is JSON: {"error": {"code", "message"}} (plus "command-id" when a command
  was produced), where the original answered text/plain.
- The body may carry the optional fields of deltawatch's commands (extra-resource-types,
  secret, ignore-fields); unknown fields are rejected (400 invalid-field), not ignored.
- The body's name on PUT must equal the path's subID (it may be omitted).
- StatusSubscription carries "instance-id" and deltawatch's extra fields; never the secret.
"""


def _operation(
    summary: str,
    operation_id: str,
    responses: dict[int, tuple[str, str | None]],
    body: bool = False,
) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for status, (description, schema) in sorted(responses.items()):
        entry: dict[str, Any] = {"description": description}
        if schema is not None:
            entry["content"] = {"application/json": {"schema": {"$ref": schema}}}
        shown[str(status)] = entry
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "responses": shown,
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SubscriptionRequest"}}
            },
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the facade, from the same models the commands use."""
    _, definitions = models_json_schema(
        [
            (SubscriptionRequest, "validation"),
            (SubscriptionState, "serialization"),
            (ErrorBody, "serialization"),
        ],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    text = json.dumps(definitions["$defs"]).replace(
        '"#/components/schemas/SubscriptionState"', '"#/components/schemas/StatusSubscription"'
    )
    schemas: dict[str, Any] = json.loads(text)
    schemas["StatusSubscription"] = schemas.pop("SubscriptionState")
    schemas["StatusSubscription"]["title"] = "StatusSubscription"
    schemas["StatusSubscriptionList"] = {
        "type": "array",
        "items": {"$ref": "#/components/schemas/StatusSubscription"},
    }

    one = "#/components/schemas/StatusSubscription"
    error = "#/components/schemas/ErrorBody"
    common: dict[int, tuple[str, str | None]] = {
        503: ("Not connected to Kafka yet, or the command could not be produced", error),
        504: ("No answer within DELTAWATCH_API_TIMEOUT_S", error),
    }
    write: dict[int, tuple[str, str | None]] = {
        **common,
        400: ("Empty body, invalid field, or the command was rejected (see code)", error),
        413: ("Body larger than 1 MiB", error),
        422: ("Body is not JSON, or a field has the wrong type", error),
    }
    instance = {"name": "instID", "in": "path", "required": True, "schema": {"type": "string"}}
    subscription = {"name": "subID", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deltawatch status subscriptions",
            "version": "1",
            "description": DESCRIPTION,
        },
        "paths": {
            "/v1/instance/{instID}/status/subscription": {
                "parameters": [instance],
                "get": _operation(
                    "List the instance's subscriptions",
                    "listSubscriptions",
                    {
                        200: (
                            "The instance's subscriptions",
                            "#/components/schemas/StatusSubscriptionList",
                        ),
                        **common,
                    },
                ),
                "post": _operation(
                    "Create a subscription",
                    "createSubscription",
                    {
                        201: ("Created", one),
                        409: ("Already exists (the original API answered 500)", error),
                        **write,
                    },
                    body=True,
                ),
            },
            "/v1/instance/{instID}/status/subscription/{subID}": {
                "parameters": [instance, subscription],
                "get": _operation(
                    "Get one subscription",
                    "getSubscription",
                    {
                        200: ("The subscription", one),
                        404: ("Not found (the original API answered 500)", error),
                        **common,
                    },
                ),
                "put": _operation(
                    "Update a subscription (subID is its name)",
                    "updateSubscription",
                    {
                        200: ("Updated", one),
                        404: ("Not found (the original API answered 500)", error),
                        **write,
                    },
                    body=True,
                ),
                "delete": _operation(
                    "Delete a subscription",
                    "deleteSubscription",
                    {
                        202: ("Deleted", None),
                        404: ("Not found (the original API answered 500)", error),
                        **common,
                    },
                ),
            },
        },
        "components": {"schemas": schemas},
    }


def rendered_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OPENAPI_FILE.write_text(rendered_openapi())
    print(f"wrote {OPENAPI_FILE}")
