"""Subscription commands and their results (CONTRACT §4): the boundary models and parsing.

The pydantic models here *are* the format: ``schemas/subscription-command.schema.json`` and
``schemas/command-result.schema.json`` are generated from them
(:mod:`services.notifier.json_schemas`), so a field cannot drift between the schema users code
against and the code that enforces it.

Parsing never raises: every record on the commands topic turns into either a valid command or
a :class:`Rejection` carrying one of the :data:`ERROR_CODES`, so one bad command is answered
and the next one is processed. Each limit has its own code because a client acts on the code
(fix the URL, shorten the name …), not on the message.
"""

from __future__ import annotations

import ipaddress
import json
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from services.notifier.delivery.webhook_signing import InvalidSecretError, secret_key
from services.notifier.filter_fields import ResourceType, SubscriptionFilters

MAX_NAME_LENGTH = 253
MAX_METADATA_BYTES = 64 * 1024
MAX_INTERVAL_S = 2**31 - 1

ErrorCode = Literal[
    "malformed-json",
    "unknown-action",
    "invalid-field",
    "invalid-name",
    "name-too-long",
    "reserved-instance-id",
    "invalid-url",
    "invalid-interval",
    "metadata-too-large",
    "forbidden-network",
    "invalid-secret",
    "unknown-change-type",
    "invalid-kind",
    "invalid-namespace",
    "empty-filter",
    "already-exists",
    "not-found",
]
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)
ACTIONS = (
    "create",
    "update",
    "delete",
    "subscribe-delta-notification",
    "unsubscribe-delta-notification",
)


def _check_name(value: str) -> str:
    if not value:
        raise PydanticCustomError("invalid-name", "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise PydanticCustomError(
            "name-too-long",
            "is {length} characters, at most {limit} allowed",
            {"length": len(value), "limit": MAX_NAME_LENGTH},
        )
    if "/" in value:
        raise PydanticCustomError("invalid-name", "must not contain '/'")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise PydanticCustomError("invalid-name", "must not contain control characters")
    return value


Name = Annotated[
    StrictStr,
    AfterValidator(_check_name),
    Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": MAX_NAME_LENGTH,
            "pattern": "^[^/\\u0000-\\u001f\\u007f-\\u009f]+$",
        }
    ),
]


RESERVED_INSTANCE_IDS = frozenset({"cps"})
"""Instance-ids refused (code ``reserved-instance-id``): ``cps/<name>`` is the key of a CPS
dataspace's state on the subscriptions topic (CONTRACT §3), so a subscription
``<instance-id>/<name>`` of an instance named ``cps`` would share its key space."""


def _check_instance_id(value: str) -> str:
    if value in RESERVED_INSTANCE_IDS:
        raise PydanticCustomError(
            "reserved-instance-id",
            "'{value}' is reserved: cps/<dataspace> keys hold CPS delta-notification state",
            {"value": value},
        )
    return value


InstanceId = Annotated[
    Name,
    AfterValidator(_check_instance_id),
    Field(json_schema_extra={"not": {"enum": sorted(RESERVED_INSTANCE_IDS)}}),
]


def _check_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise PydanticCustomError("invalid-url", "is not a URL: {why}", {"why": str(exc)}) from None
    if parts.scheme not in {"http", "https"}:
        raise PydanticCustomError("invalid-url", "must be an http:// or https:// URL")
    if not parts.hostname:
        raise PydanticCustomError("invalid-url", "has no host")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise PydanticCustomError("invalid-url", "must not contain spaces or control characters")
    return value


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise PydanticCustomError(
            "metadata-too-large",
            "is {size} bytes serialized, at most {limit} allowed",
            {"size": size, "limit": MAX_METADATA_BYTES},
        )
    return value


def _check_secret(value: SecretStr) -> SecretStr:
    try:
        secret_key(value.get_secret_value())
    except InvalidSecretError as exc:
        raise PydanticCustomError("invalid-secret", str(exc)) from None
    return value


def _check_field_path(value: str) -> str:
    if not value or any(not part for part in value.split(".")):
        raise PydanticCustomError("invalid-field", "must be a dotted path like status.phase")
    return value


class SubscriptionRequest(SubscriptionFilters):
    """The seed's SubscriptionRequest plus the optional fields of CONTRACT §4."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name
    callback_url: Annotated[StrictStr, AfterValidator(_check_url)] = Field(alias="callback-url")
    min_notify_interval: StrictInt = Field(
        0,
        alias="min-notify-interval",
        ge=0,
        le=MAX_INTERVAL_S,
        description="Seconds; at most one callback per interval (0 = every delta).",
    )
    metadata: Annotated[dict[str, Any], AfterValidator(_check_metadata)] = Field(
        default_factory=dict, description="Echoed in every callback; at most 64 KiB as JSON."
    )
    extra_resource_types: list[ResourceType] | None = Field(None, alias="extra-resource-types")
    secret: Annotated[SecretStr, AfterValidator(_check_secret)] | None = Field(
        None, description="Standard Webhooks signing secret: whsec_ + base64 of 24-64 bytes."
    )
    ignore_fields: list[Annotated[StrictStr, AfterValidator(_check_field_path)]] | None = Field(
        None, alias="ignore-fields"
    )


class _InstanceCommand(BaseModel):
    """What every command on one instance's subscriptions carries, in this field order.

    Each subclass narrows ``action`` to its one value (the union's discriminator); an
    overridden field keeps its place, so validation errors and the generated schema list the
    fields as CONTRACT §4 writes them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    command_id: StrictStr = Field(alias="command-id", min_length=1)
    action: str
    instance_id: InstanceId = Field(alias="instance-id")


class CreateCommand(_InstanceCommand):
    action: Literal["create"]
    subscription: SubscriptionRequest


class UpdateCommand(_InstanceCommand):
    action: Literal["update"]
    subscription: SubscriptionRequest


class DeleteCommand(_InstanceCommand):
    action: Literal["delete"]
    subscription_name: Name = Field(alias="subscription-name")


class CpsCommand(BaseModel):
    """Subscribe / unsubscribe CPS delta notification for a dataspace's anchors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    command_id: StrictStr = Field(alias="command-id", min_length=1)
    action: Literal["subscribe-delta-notification", "unsubscribe-delta-notification"]
    dataspace: Name
    anchors: list[Name] | None = Field(
        None, description="Empty or absent: every anchor (instance) of the dataspace."
    )


Command = Annotated[
    CreateCommand | UpdateCommand | DeleteCommand | CpsCommand, Field(discriminator="action")
]
COMMAND_ADAPTER: TypeAdapter[CreateCommand | UpdateCommand | DeleteCommand | CpsCommand] = (
    TypeAdapter(Command)
)


class CommandError(BaseModel):
    code: ErrorCode
    message: str


class CommandResult(BaseModel):
    """The one answer to a command, keyed by its command-id on the results topic."""

    model_config = ConfigDict(populate_by_name=True)

    command_id: str = Field(alias="command-id")
    status: Literal["accepted", "rejected"]
    error: CommandError | None
    action: str | None
    instance_id: str | None = Field(alias="instance-id")
    subscription_name: str | None = Field(alias="subscription-name")
    processed_at: str = Field(alias="processed-at", description="RFC 3339 UTC, milliseconds.")
    subscription: dict[str, Any] | None = Field(
        None,
        description="Beyond CONTRACT §4: the subscription state after an accepted create or "
        "update (what the REST facade answers with).",
    )

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


@dataclass(frozen=True)
class Rejection:
    """A command refused before it touched any state."""

    command_id: str
    code: str
    message: str
    action: str | None = None
    instance_id: str | None = None
    subscription_name: str | None = None


_WHOLE_FIELD_CODES = {"kinds": "invalid-kind"}
"""Fields whose every problem, a missing or unknown member included, has their own code."""
_FIELD_CODES = {
    "min-notify-interval": "invalid-interval",
    "callback-url": "invalid-url",
    "secret": "invalid-secret",
}


def parse_command(
    raw: bytes | None, position: str
) -> CreateCommand | UpdateCommand | DeleteCommand | CpsCommand | Rejection:
    """One record's value → a valid command, or why not (``position`` = topic/partition/offset)."""
    try:
        document = json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Rejection(position, "malformed-json", f"value is not JSON: {exc}")
    if not isinstance(document, dict):
        return Rejection(position, "malformed-json", "value is not a JSON object")
    raw_id = document.get("command-id")
    command_id = raw_id if isinstance(raw_id, str) and raw_id else position
    action = document.get("action")
    subscription = document.get("subscription")
    name = document.get("subscription-name")
    if isinstance(subscription, dict):
        name = subscription.get("name")
    context = {
        "action": action if isinstance(action, str) else None,
        "instance_id": _text(document.get("instance-id")),
        "subscription_name": _text(name),
    }
    if command_id == position:
        return Rejection(
            position, "invalid-field", "command-id: missing or not a non-empty string", **context
        )
    if "action" not in document:
        return Rejection(command_id, "invalid-field", "action: missing", **context)
    if action not in ACTIONS:
        return Rejection(
            command_id,
            "unknown-action",
            f"action {action!r} is not one of {', '.join(ACTIONS)}",
            **context,
        )
    try:
        return COMMAND_ADAPTER.validate_python(document)
    except ValidationError as exc:
        code, message = describe(exc)
        return Rejection(command_id, code, message, **context)


def describe(exc: ValidationError) -> tuple[str, str]:
    """The code and one-line message of the first problem pydantic found."""
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"] if not isinstance(part, int)]
    # A discriminated union puts the action's tag first: it names no field.
    if location and location[0] in ACTIONS:
        location = location[1:]
    where = ".".join(location) or "value"
    message = f"{where}: {first['msg']}"
    error_type = str(first["type"])
    if error_type in ERROR_CODES:
        return error_type, message
    for part in location:
        if part in _WHOLE_FIELD_CODES:
            return _WHOLE_FIELD_CODES[part], message
    if error_type == "missing" or error_type == "extra_forbidden":
        return "invalid-field", message
    for part in reversed(location):
        if part in _FIELD_CODES:
            return _FIELD_CODES[part], message
    return "invalid-field", message


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
