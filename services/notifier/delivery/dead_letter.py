"""The dead letter of CONTRACT §6: a notification the notifier gave up on.

Written to ``DELTAWATCH_DLQ_TOPIC`` (key ``<instance-id>/<subscription-name>``) in the same
transaction that clears it from the outbox, so a notification is never both pending and
dead, and never neither. ``payload`` is the body that would have been POSTed, so an operator
can replay it as is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DeadLetter(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    instance_id: str = Field(alias="instance-id")
    subscription_name: str = Field(alias="subscription-name")
    webhook_id: str = Field(alias="webhook-id")
    payload: dict[str, Any]
    attempts: int
    last_status: int = Field(alias="last-status", description="HTTP status, 0 when none.")
    last_error: str | None = Field(alias="last-error")
    first_attempt_at: str | None = Field(alias="first-attempt-at")
    last_attempt_at: str | None = Field(alias="last-attempt-at")

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
