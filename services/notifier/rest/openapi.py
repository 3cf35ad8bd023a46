"""The OpenAPI 3.1 document of the REST facade, built from the models the commands use.

Built, not written by hand: the request and state schemas come from the same pydantic models
as ``schemas/subscription-command.schema.json`` and ``subscription-state.schema.json``, so the
document cannot drift from the commands the facade produces. The checked-in
``schemas/openapi.json`` is for clients; ``python -m services.notifier.rest.openapi`` rewrites
it, one test fails when it is stale and another asserts the served document equals it. Only
the paths, status codes and error shape are spelled out here, as data in small functions.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from deltawatch.schema_files import SOURCE_DIR
from services.notifier.commands import SubscriptionRequest
from services.notifier.subscription_state import SubscriptionState

OPENAPI_FILE = SOURCE_DIR / "openapi.json"

Responses = dict[int, tuple[str, str | None]]

ONE = "#/components/schemas/StatusSubscription"
ERROR = "#/components/schemas/ErrorBody"


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Machine-readable reason: the command result's code (invalid-url, "
        "forbidden-network, invalid-secret, already-exists, not-found …) or one of the "
        "facade's own: empty-body, malformed-json, invalid-field, invalid-name, "
        "invalid-interval, too-large, timeout, not-ready, kafka-unavailable, and with "
        "DELTAWATCH_API_AUTH=kubernetes unauthenticated, forbidden, auth-unavailable."
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
  secret, ignore-fields, and the filters change-types, kinds, namespaces,
  exclude-namespaces, include-patch); unknown fields are rejected (400 invalid-field), not
  ignored.
- The body's name on PUT must equal the path's subID (it may be omitted).
- StatusSubscription carries "instance-id" and deltawatch's extra fields; never the secret.

Authentication (optional, DELTAWATCH_API_AUTH=kubernetes; the Helm chart turns it on): every
/v1 request carries "Authorization: Bearer <Kubernetes ServiceAccount token>", checked with the
TokenReview API (401 without or with an invalid token) and authorised per verb with a
SubjectAccessReview on resource "subscriptions" of API group "deltawatch.io" (403 when not
allowed). With the default DELTAWATCH_API_AUTH=none the facade is open, as the original API.
"""

COMMON: Responses = {
    401: ("No bearer token, or not a valid one (only with DELTAWATCH_API_AUTH=kubernetes)", ERROR),
    403: ("The caller may not use this verb on deltawatch.io/subscriptions", ERROR),
    503: (
        "Not connected to Kafka yet, the command could not be produced, or (with auth) the "
        "API server could not review the token",
        ERROR,
    ),
    504: ("No answer within DELTAWATCH_API_TIMEOUT_S", ERROR),
}
WRITE: Responses = {
    **COMMON,
    400: ("Empty body, invalid field, or the command was rejected (see code)", ERROR),
    413: ("Body larger than 1 MiB", ERROR),
    422: ("Body is not JSON, or a field has the wrong type", ERROR),
}
NOT_FOUND: Responses = {404: ("Not found (the original API answered 500)", ERROR)}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the facade, from the same models the commands use."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "deltawatch status subscriptions",
            "version": "1",
            "description": DESCRIPTION,
        },
        "paths": _paths(),
        "components": {
            "schemas": _component_schemas(),
            "securitySchemes": {
                "kubernetesServiceAccount": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Kubernetes ServiceAccount token (TokenReview), required "
                    "only when the notifier runs with DELTAWATCH_API_AUTH=kubernetes.",
                }
            },
        },
        # Either the token or nothing: which one applies is the deployment's choice.
        "security": [{"kubernetesServiceAccount": []}, {}],
    }


def rendered_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def _component_schemas() -> dict[str, Any]:
    """The models' schemas, with the state named as the seed names it (StatusSubscription)."""
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
        '"#/components/schemas/SubscriptionState"', f'"{ONE}"'
    )
    schemas: dict[str, Any] = json.loads(text)
    schemas["StatusSubscription"] = schemas.pop("SubscriptionState")
    schemas["StatusSubscription"]["title"] = "StatusSubscription"
    schemas["StatusSubscriptionList"] = {"type": "array", "items": {"$ref": ONE}}
    return schemas


def _paths() -> dict[str, Any]:
    """The five routes of CONTRACT §9 with their answers (404/409 documented as departures)."""
    instance = {"name": "instID", "in": "path", "required": True, "schema": {"type": "string"}}
    subscription = {"name": "subID", "in": "path", "required": True, "schema": {"type": "string"}}
    many = "#/components/schemas/StatusSubscriptionList"
    return {
        "/v1/instance/{instID}/status/subscription": {
            "parameters": [instance],
            "get": _operation(
                "List the instance's subscriptions",
                "listSubscriptions",
                {200: ("The instance's subscriptions", many), **COMMON},
            ),
            "post": _operation(
                "Create a subscription",
                "createSubscription",
                {
                    201: ("Created", ONE),
                    409: ("Already exists (the original API answered 500)", ERROR),
                    **WRITE,
                },
                body=True,
            ),
        },
        "/v1/instance/{instID}/status/subscription/{subID}": {
            "parameters": [instance, subscription],
            "get": _operation(
                "Get one subscription",
                "getSubscription",
                {200: ("The subscription", ONE), **NOT_FOUND, **COMMON},
            ),
            "put": _operation(
                "Update a subscription (subID is its name)",
                "updateSubscription",
                {200: ("Updated", ONE), **NOT_FOUND, **WRITE},
                body=True,
            ),
            "delete": _operation(
                "Delete a subscription",
                "deleteSubscription",
                {202: ("Deleted", None), **NOT_FOUND, **COMMON},
            ),
        },
    }


def _operation(
    summary: str, operation_id: str, responses: Responses, body: bool = False
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


if __name__ == "__main__":
    OPENAPI_FILE.write_text(rendered_openapi())
    print(f"wrote {OPENAPI_FILE}")
