"""What the notifier remembers per subscription, in the two compacted topics it owns.

* Public, on ``DELTAWATCH_SUBSCRIPTIONS_TOPIC`` (key ``<instance-id>/<subscription-name>``):
  :class:`SubscriptionState`, the seed's StatusSubscription plus ``instance-id`` and the
  optional fields of CONTRACT §4. Beyond the seed it carries ``created-at`` (the baseline:
  deltas observed before it are not told) and ``signed`` (whether callbacks are signed) —
  never the secret. The CLI, the watcher (``extra-resource-types``) and the REST facade
  read it.
* Internal, on ``deltawatch.notifier-outbox-changelog`` (same key, same partition):
  :class:`OutboxRecord`, what delivery needs to survive a crash — the pending net change and
  throttle window of the subscription's lane, the notification in flight (its webhook-id,
  frozen body and attempts so far), the signing secret sealed with
  ``DELTAWATCH_SECRET_KEY`` (:mod:`services.notifier.delivery.secret_box`), and the memory of
  the filters that need one (``ignore-fields`` fingerprints, ``include-patch`` told objects).

* Internal, same changelog, key ``cps/<dataspace>/<anchor>`` on the anchor's deltas partition:
  :class:`CpsLaneRecord`, a CPS lane's pending change, window and told objects
  (:mod:`services.notifier.cps.lanes`).

All are written in the same Kafka transaction as the consumed offsets, so after a crash the
restored state matches exactly the input that was committed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.notifier.filter_fields import ResourceType, SubscriptionFilters


def subscription_key(instance_id: str, name: str) -> str:
    """``<instance-id>/<subscription-name>`` (neither may contain ``/``, CONTRACT §4)."""
    return f"{instance_id}/{name}"


def split_key(key: str) -> tuple[str, str] | None:
    instance_id, slash, name = key.partition("/")
    if not slash or not instance_id or not name or "/" in name:
        return None
    return instance_id, name


class SubscriptionState(SubscriptionFilters):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    min_notify_interval: int = Field(alias="min-notify-interval")
    last_update_time: str = Field(alias="last-update-time")
    callback_url: str = Field(alias="callback-url")
    last_notify_time: str = Field(alias="last-notify-time")
    last_notify_status: int = Field(alias="last-notify-status")
    metadata: dict[str, Any]
    instance_id: str = Field(alias="instance-id")
    extra_resource_types: list[ResourceType] | None = Field(None, alias="extra-resource-types")
    ignore_fields: list[str] | None = Field(None, alias="ignore-fields")
    created_at: str = Field(alias="created-at", description="Baseline: RFC 3339 UTC, ms.")
    created_at_ms: int = Field(
        alias="created-at-ms", description="The baseline in epoch milliseconds."
    )
    signed: bool = Field(False, description="Callbacks carry webhook-signature.")

    @property
    def key(self) -> str:
        return subscription_key(self.instance_id, self.name)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def public(self) -> dict[str, Any]:
        """The JSON object shown to users (CLI, REST facade, command results)."""
        document: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return document


class InFlight(BaseModel):
    """A notification taken off the lane and not yet delivered nor dead-lettered."""

    model_config = ConfigDict(populate_by_name=True)

    webhook_id: str = Field(alias="webhook-id")
    number: int
    body: str
    """The exact JSON body, frozen when the notification was formed: every retry sends it."""
    observed_at: float | None = Field(None, alias="observed-at")
    attempts: int = 0
    first_attempt_at: float | None = Field(None, alias="first-attempt-at")
    last_attempt_at: float | None = Field(None, alias="last-attempt-at")
    last_status: int = Field(0, alias="last-status")
    last_error: str | None = Field(None, alias="last-error")


class OutboxRecord(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sealed_secret: str | None = Field(None, alias="sealed-secret")
    lane: dict[str, Any] = Field(default_factory=dict)
    in_flight: InFlight | None = Field(None, alias="in-flight")
    ignore_fields_seen: dict[str, str] = Field(
        default_factory=dict,
        alias="ignore-fields-seen",
        description="Resource key → fingerprint, only for subscriptions with ignore-fields.",
    )
    told_objects: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        alias="told-objects",
        description="Resource key → the object last told, only for subscriptions with "
        "include-patch.",
    )

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class CpsLaneRecord(BaseModel):
    """A CPS lane's state in the outbox changelog, key ``cps/<dataspace>/<anchor>``.

    Written with the offsets of the deltas it came from, on the anchor's deltas partition:
    the pending net change and throttle window (``lane``), the notification count, and the
    objects the dataspace was last told of (``view``, :class:`~services.notifier.cps.events.
    AnchorView`), which the next UPDATE's merge patch starts from.
    """

    model_config = ConfigDict(populate_by_name=True)

    kind: Literal["cps-lane"] = "cps-lane"
    dataspace: str
    anchor: str
    since_ms: int = Field(alias="since-ms", description="The anchor's baseline: lane identity.")
    lane: dict[str, Any] = Field(default_factory=dict)
    view: list[dict[str, Any]] = Field(default_factory=list)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
