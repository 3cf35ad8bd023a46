"""Applying one validated command to the subscription table: the seed's Create / Update /
Delete, made a pure function so every rule (exists, not found, network fence, secrets
without a key) is tested without Kafka.

:func:`handle_command` mutates only the in-memory :class:`SubscriptionTable` and returns what
must be written, in one transaction, for that command: its result, the subscription state
records (a tombstone on delete) and what changed for delivery. The caller does the I/O
(resolving the callback host beforehand, producing the records afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import SecretStr

from deltawatch.cloud_events import rfc3339_ms
from services.notifier.commands import (
    CommandError,
    CommandResult,
    CpsCommand,
    CreateCommand,
    DeleteCommand,
    Rejection,
    UpdateCommand,
)
from services.notifier.cps import subscriptions as cps_subscriptions
from services.notifier.delivery.callback_networks import Address, Network, refusal
from services.notifier.subscription_state import SubscriptionState, subscription_key


@dataclass
class SubscriptionTable:
    """Every subscription this notifier owns, as restored and kept up to date."""

    subscriptions: dict[str, SubscriptionState] = field(default_factory=dict)
    by_instance: dict[str, set[str]] = field(default_factory=dict)
    cps: dict[str, cps_subscriptions.DataspaceSubscription] = field(default_factory=dict)

    def put(self, state: SubscriptionState) -> None:
        self.subscriptions[state.key] = state
        self.by_instance.setdefault(state.instance_id, set()).add(state.key)

    def remove(self, key: str) -> SubscriptionState | None:
        state = self.subscriptions.pop(key, None)
        if state is not None:
            keys = self.by_instance.get(state.instance_id, set())
            keys.discard(key)
            if not keys:
                self.by_instance.pop(state.instance_id, None)
        return state

    def of_instance(self, instance_id: str) -> list[SubscriptionState]:
        return [self.subscriptions[k] for k in sorted(self.by_instance.get(instance_id, ()))]


@dataclass(frozen=True)
class SubscriptionChange:
    """What delivery must learn from an accepted create / update / delete."""

    kind: Literal["created", "updated", "deleted"]
    key: str
    state: SubscriptionState | None
    secret: SecretStr | None = None


@dataclass(frozen=True)
class Applied:
    result: CommandResult
    writes: list[tuple[str, bytes | None]] = field(default_factory=list)
    """Records for the subscriptions topic: (key, value or None for a tombstone)."""
    change: SubscriptionChange | None = None


@dataclass(frozen=True)
class CommandContext:
    """What the pure handler needs from outside, gathered by the caller beforehand."""

    now: datetime
    sent_at: datetime
    """The command record's timestamp: a new subscription's baseline."""
    callback_addresses: Sequence[Address] = ()
    allow_networks: Sequence[Network] = ()
    deny_networks: Sequence[Network] = ()
    secrets_enabled: bool = False


def reject(rejection: Rejection, now: datetime) -> Applied:
    return Applied(
        CommandResult(
            command_id=rejection.command_id,
            status="rejected",
            error=CommandError(code=rejection.code, message=rejection.message),
            action=rejection.action,
            instance_id=rejection.instance_id,
            subscription_name=rejection.subscription_name,
            processed_at=rfc3339_ms(now),
        )
    )


def handle_command(
    table: SubscriptionTable,
    command: CreateCommand | UpdateCommand | DeleteCommand | CpsCommand,
    context: CommandContext,
) -> Applied:
    if isinstance(command, CpsCommand):
        return _handle_cps(table, command, context)
    if isinstance(command, DeleteCommand):
        return _handle_delete(table, command, context)
    return _handle_upsert(table, command, context)


def _rejected(
    command: CreateCommand | UpdateCommand | DeleteCommand | CpsCommand,
    code: str,
    message: str,
    context: CommandContext,
    name: str | None,
) -> Applied:
    instance_id = None if isinstance(command, CpsCommand) else command.instance_id
    return reject(
        Rejection(command.command_id, code, message, command.action, instance_id, name),
        context.now,
    )


def _accepted(
    command: CreateCommand | UpdateCommand | DeleteCommand | CpsCommand,
    context: CommandContext,
    name: str | None,
    writes: list[tuple[str, bytes | None]],
    change: SubscriptionChange | None,
) -> Applied:
    state = change.state if change is not None else None
    return Applied(
        CommandResult(
            command_id=command.command_id,
            status="accepted",
            error=None,
            action=command.action,
            instance_id=None if isinstance(command, CpsCommand) else command.instance_id,
            subscription_name=name,
            processed_at=rfc3339_ms(context.now),
            subscription=state.public() if state is not None else None,
        ),
        writes,
        change,
    )


def _handle_upsert(
    table: SubscriptionTable, command: CreateCommand | UpdateCommand, context: CommandContext
) -> Applied:
    request = command.subscription
    key = subscription_key(command.instance_id, request.name)
    existing = table.subscriptions.get(key)
    if isinstance(command, CreateCommand) and existing is not None:
        return _rejected(
            command,
            "already-exists",
            f"subscription {request.name!r} of instance {command.instance_id!r} already exists",
            context,
            request.name,
        )
    if isinstance(command, UpdateCommand) and existing is None:
        return _rejected(
            command,
            "not-found",
            f"subscription {request.name!r} of instance {command.instance_id!r} does not exist",
            context,
            request.name,
        )
    why = refusal(context.callback_addresses, context.allow_networks, context.deny_networks)
    if why is not None:
        return _rejected(
            command, "forbidden-network", f"callback-url: {why}", context, request.name
        )
    if request.secret is not None and not context.secrets_enabled:
        return _rejected(
            command,
            "invalid-secret",
            "secret: this notifier has no DELTAWATCH_SECRET_KEY to keep secrets encrypted",
            context,
            request.name,
        )
    now = rfc3339_ms(context.now)
    state = SubscriptionState(
        name=request.name,
        min_notify_interval=request.min_notify_interval,
        last_update_time=now,
        callback_url=request.callback_url,
        last_notify_time=existing.last_notify_time if existing else now,
        last_notify_status=existing.last_notify_status if existing else 0,
        metadata=request.metadata,
        instance_id=command.instance_id,
        extra_resource_types=request.extra_resource_types,
        ignore_fields=request.ignore_fields,
        created_at=existing.created_at if existing else rfc3339_ms(context.sent_at),
        created_at_ms=(
            existing.created_at_ms if existing else int(context.sent_at.timestamp() * 1000)
        ),
        signed=request.secret is not None,
        **request.filters(),
    )
    table.put(state)
    kind: Literal["created", "updated"] = "updated" if existing else "created"
    change = SubscriptionChange(kind, key, state, request.secret)
    return _accepted(command, context, request.name, [(key, state.to_bytes())], change)


def _handle_delete(
    table: SubscriptionTable, command: DeleteCommand, context: CommandContext
) -> Applied:
    key = subscription_key(command.instance_id, command.subscription_name)
    if table.remove(key) is None:
        return _rejected(
            command,
            "not-found",
            f"subscription {command.subscription_name!r} of instance "
            f"{command.instance_id!r} does not exist",
            context,
            command.subscription_name,
        )
    change = SubscriptionChange("deleted", key, None)
    return _accepted(command, context, command.subscription_name, [(key, None)], change)


def _handle_cps(table: SubscriptionTable, command: CpsCommand, context: CommandContext) -> Applied:
    """Subscribe / unsubscribe CPS delta notification: state under ``cps/<dataspace>``."""
    state = cps_subscriptions.apply_command(
        table.cps.get(command.dataspace),
        command.dataspace,
        command.action,
        command.anchors,
        at_ms=int(context.sent_at.timestamp() * 1000),
    )
    if state.is_empty:
        table.cps.pop(command.dataspace, None)
    else:
        table.cps[command.dataspace] = state
    key = cps_subscriptions.state_key(command.dataspace)
    return _accepted(command, context, None, [(key, cps_subscriptions.encode_state(state))], None)
