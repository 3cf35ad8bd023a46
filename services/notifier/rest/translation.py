"""Request body → the ``subscription`` of a command, and a command result → an HTTP status.

Pure functions, no server and no Kafka, so the seed's validation order is tested case by case
(``tests/unit/notifier/rest/test_request_translation.py``). The seed's handlers decoded the body
first (empty → 400, undecodable or wrongly typed → 422, as Go's decoder refused it), then
checked name, interval and callback URL (400); :func:`subscription_from_body` runs those steps
in that order, one small function each. Everything else (URL syntax, limits, the optional
fields) is the notifier core's to judge, so Kafka and REST clients get the same answers.
"""

from __future__ import annotations

import json
from typing import Any

from services.notifier.rest.errors import ApiError
from services.notifier.subscription_directory import SECRET_FIELDS

INT32 = (-(2**31), 2**31 - 1)


def subscription_from_body(
    raw: bytes, instance_id: str, path_name: str | None = None
) -> dict[str, Any] | ApiError:
    """A request body → the ``subscription`` of a create (``path_name`` None) or update command.

    Follows the seed's handlers: Go's decoder turned ``null`` fields into zero values and
    refused wrongly typed ones (422) before the handler checked name, interval and callback
    URL (400).
    """
    document = _decoded(raw)
    if isinstance(document, ApiError):
        return document
    if (wrong := _wrongly_typed(document)) is not None:
        return wrong
    body_instance = document.pop("instance-id", None)
    if body_instance is not None and body_instance != instance_id:
        return ApiError(
            400,
            "invalid-field",
            f"instance-id {body_instance!r} in the body differs from {instance_id!r} in the path",
        )
    subscription = _with_zero_values(document)
    if path_name is not None:
        if "name" not in document or document["name"] is None:
            subscription["name"] = path_name
        elif document["name"] != path_name:
            return ApiError(
                400,
                "invalid-name",
                f"name {document['name']!r} in the body differs from {path_name!r} in the path",
            )
    return _seed_checked(subscription)


def status_of_rejection(code: str) -> int:
    """The HTTP status of a rejected command (the seed said 500 for the first two)."""
    return {"not-found": 404, "already-exists": 409}.get(code, 400)


def shown(subscription: dict[str, Any]) -> dict[str, Any]:
    """A subscription as a read answers it: never its secret."""
    return {k: v for k, v in subscription.items() if k not in SECRET_FIELDS}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_string_or_null(value: object) -> bool:
    return value is None or isinstance(value, str)


def _decoded(raw: bytes) -> dict[str, Any] | ApiError:
    """The body as a JSON object (``null`` is an empty one), or the seed's 400/422."""
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
    return document


def _wrongly_typed(document: dict[str, Any]) -> ApiError | None:
    """The 422 Go's decoder gave for a seed field of the wrong type, if any."""
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
    return None


def _with_zero_values(document: dict[str, Any]) -> dict[str, Any]:
    """The document with missing or ``null`` seed fields as Go's zero values."""
    return {
        **document,
        "name": document.get("name") or "",
        "callback-url": document.get("callback-url") or "",
        "min-notify-interval": document.get("min-notify-interval") or 0,
        "metadata": document.get("metadata") or {},
    }


def _seed_checked(subscription: dict[str, Any]) -> dict[str, Any] | ApiError:
    """The seed handler's own checks, in its order: name, interval, callback URL."""
    if not subscription["name"]:
        return ApiError(400, "invalid-name", "Missing name in the request")
    if subscription["min-notify-interval"] < 0:
        return ApiError(400, "invalid-interval", "Min Notify Interval has invalid value")
    if not subscription["callback-url"]:
        return ApiError(400, "invalid-url", "CallbackUrl has invalid value")
    return subscription
