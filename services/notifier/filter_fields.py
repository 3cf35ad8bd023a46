"""The optional filter fields of a subscription (CONTRACT §4), as pydantic declares them.

Declared once, here, for both the command (:class:`~services.notifier.commands.
SubscriptionRequest`) and the state it becomes (:class:`~services.notifier.subscription_state.
SubscriptionState`), so the two cannot disagree and the generated JSON Schemas show the same
fields. Each kind of mistake raises its own error code (listed in
:data:`services.notifier.commands.ErrorCode`), because a client acts on the code. Applying the
filters to a delta is :mod:`services.notifier.change_filter`'s job, not this module's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError


class ResourceType(BaseModel):
    """A kind watched for the instance beyond the defaults: ``{"group","version","kind"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: StrictStr = ""
    version: StrictStr = Field(min_length=1)
    kind: StrictStr = Field(min_length=1)


CHANGE_TYPES = ("created", "modified", "deleted")
NAMESPACE_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A Kubernetes namespace name: an RFC 1123 label of at most 63 characters."""


def _check_change_type(value: str) -> str:
    if value not in CHANGE_TYPES:
        raise PydanticCustomError(
            "unknown-change-type",
            "{value!r} is not one of {known}",
            {"value": value, "known": ", ".join(CHANGE_TYPES)},
        )
    return value


def _check_namespace(value: str) -> str:
    if len(value) > 63 or not NAMESPACE_PATTERN.match(value):
        raise PydanticCustomError(
            "invalid-namespace", "{value!r} is not a namespace name", {"value": value}
        )
    return value


def _not_empty(value: list[Any]) -> list[Any]:
    if not value:
        raise PydanticCustomError("empty-filter", "must not be empty (omit it: no filter)")
    return value


_AT_LEAST_ONE = Field(json_schema_extra={"minItems": 1})
ChangeType = Annotated[
    StrictStr, AfterValidator(_check_change_type), Field(json_schema_extra={"enum": CHANGE_TYPES})
]
Namespace = Annotated[
    StrictStr,
    AfterValidator(_check_namespace),
    Field(json_schema_extra={"maxLength": 63, "pattern": NAMESPACE_PATTERN.pattern}),
]


class SubscriptionFilters(BaseModel):
    """The optional filters of a subscription (CONTRACT §4); absent = told every change.

    Declared once for the command (:class:`SubscriptionRequest`) and the state it becomes
    (:class:`~services.notifier.subscription_state.SubscriptionState`), so the two cannot
    disagree; :mod:`services.notifier.change_filter` applies them.
    """

    change_types: Annotated[list[ChangeType], AfterValidator(_not_empty), _AT_LEAST_ONE] | None = (
        Field(None, alias="change-types", description="Report only these kinds of change.")
    )
    kinds: Annotated[list[ResourceType], AfterValidator(_not_empty), _AT_LEAST_ONE] | None = Field(
        None, description="Report only resources of these kinds."
    )
    namespaces: Annotated[list[Namespace], AfterValidator(_not_empty), _AT_LEAST_ONE] | None = (
        Field(None, description="Report only resources in these namespaces (exact names).")
    )
    exclude_namespaces: list[Namespace] | None = Field(
        None, alias="exclude-namespaces", description="Never report resources in these."
    )
    include_patch: StrictBool | None = Field(
        None,
        alias="include-patch",
        description="Each modified entry also carries the RFC 7386 merge patch from the object "
        "this subscriber was last told of.",
    )

    @model_validator(mode="after")
    def _namespaces_apart(self) -> SubscriptionFilters:
        both = set(self.namespaces or ()) & set(self.exclude_namespaces or ())
        if both:
            raise PydanticCustomError(
                "invalid-namespace",
                "namespaces {names} are both included and excluded",
                {"names": ", ".join(sorted(both))},
            )
        return self

    def filters(self) -> dict[str, Any]:
        """The filter fields, by field name (to copy them into another model)."""
        return {name: getattr(self, name) for name in SubscriptionFilters.model_fields}
