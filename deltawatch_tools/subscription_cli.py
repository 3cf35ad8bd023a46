"""``deltawatch subscription …``: the operator's hand on subscriptions (CONTRACT §1, §4).

Writes go through the commands topic like every other client's (a fresh command-id, then
wait for the one result), so the CLI can never disagree with the notifier. Reads come from
the compacted subscriptions topic, read from the beginning to its end, and show what the
notifier last recorded, ``last-notify-time`` / ``last-notify-status`` included.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from deltawatch_tools.broker_access import CliError
from deltawatch_tools.cli_client import (
    DEFAULT_TIMEOUT_S,
    JsonFlag,
    Timeout,
    listed_states,
    print_listing,
    read_states,
    run_command,
    verb_group,
)

subscription_app = verb_group("Create, update, delete, get and list callback subscriptions.")

Instance = Annotated[str, typer.Option("--instance", "-i", help="instance-id")]
Name = Annotated[str, typer.Option("--name", "-n", help="subscription name")]


def _subscription(
    name: str,
    url: str,
    interval: int,
    metadata: str,
    secret: str | None,
    extra_types: list[str],
    ignore_fields: list[str],
) -> dict[str, Any]:
    try:
        parsed_metadata = json.loads(metadata)
    except json.JSONDecodeError as exc:
        raise CliError(f"--metadata is not JSON: {exc}", exit_code=2) from None
    body: dict[str, Any] = {
        "name": name,
        "callback-url": url,
        "min-notify-interval": interval,
        "metadata": parsed_metadata,
    }
    if secret:
        body["secret"] = secret
    if extra_types:
        kinds = []
        for text in extra_types:
            parts = text.split("/")
            if len(parts) == 2:
                parts = ["", *parts]
            if len(parts) != 3:
                raise CliError(
                    f"--extra-resource-type {text!r}: use group/version/Kind", exit_code=2
                )
            kinds.append({"group": parts[0], "version": parts[1], "kind": parts[2]})
        body["extra-resource-types"] = kinds
    if ignore_fields:
        body["ignore-fields"] = ignore_fields
    return body


def _upsert(
    action: str,
    instance: str,
    name: str,
    url: str,
    interval: int,
    metadata: str,
    secret: str | None,
    extra_types: list[str] | None,
    ignore_fields: list[str] | None,
    timeout: float,
) -> None:
    subscription = _subscription(
        name, url, interval, metadata, secret, extra_types or [], ignore_fields or []
    )
    run_command({"action": action, "instance-id": instance, "subscription": subscription}, timeout)


URL = Annotated[str, typer.Option("--url", help="callback-url (http or https)")]
Interval = Annotated[int, typer.Option("--interval", help="min-notify-interval, seconds")]
Metadata = Annotated[str, typer.Option(help="metadata, a JSON object")]
Secret = Annotated[
    str | None,
    typer.Option(envvar="DELTAWATCH_SUBSCRIPTION_SECRET", help="whsec_ signing secret"),
]
ExtraTypes = Annotated[
    list[str] | None, typer.Option("--extra-resource-type", help="group/version/Kind")
]
IgnoreFields = Annotated[list[str] | None, typer.Option("--ignore-field", help="dotted path")]


@subscription_app.command()
def create(
    instance: Instance,
    name: Name,
    url: URL,
    interval: Interval = 0,
    metadata: Metadata = "{}",
    secret: Secret = None,
    extra_resource_type: ExtraTypes = None,
    ignore_field: IgnoreFields = None,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """Create a subscription; prints the result (exit 1 when rejected)."""
    _upsert(
        "create",
        instance,
        name,
        url,
        interval,
        metadata,
        secret,
        extra_resource_type,
        ignore_field,
        timeout,
    )


@subscription_app.command()
def update(
    instance: Instance,
    name: Name,
    url: URL,
    interval: Interval = 0,
    metadata: Metadata = "{}",
    secret: Secret = None,
    extra_resource_type: ExtraTypes = None,
    ignore_field: IgnoreFields = None,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """Replace a subscription's settings (as the seed's Update does)."""
    _upsert(
        "update",
        instance,
        name,
        url,
        interval,
        metadata,
        secret,
        extra_resource_type,
        ignore_field,
        timeout,
    )


@subscription_app.command()
def delete(instance: Instance, name: Name, timeout: Timeout = DEFAULT_TIMEOUT_S) -> None:
    """Delete a subscription."""
    run_command({"action": "delete", "instance-id": instance, "subscription-name": name}, timeout)


@subscription_app.command()
def get(instance: Instance, name: Name, timeout: Timeout = DEFAULT_TIMEOUT_S) -> None:
    """Show one subscription as the notifier last recorded it."""
    state = read_states(timeout).get(f"{instance}/{name}")
    if state is None:
        raise CliError(f"subscription {name!r} of instance {instance!r} does not exist")
    typer.echo(json.dumps(state, indent=2))


@subscription_app.command("list")
def list_subscriptions(
    instance: Annotated[
        str | None, typer.Option("--instance", "-i", help="only this instance")
    ] = None,
    as_json: JsonFlag = False,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """List subscriptions with their last notification time and status."""
    states = listed_states(timeout, cps=False, field="instance-id", value=instance)
    columns = (
        "instance-id",
        "name",
        "min-notify-interval",
        "last-notify-time",
        "last-notify-status",
        "callback-url",
    )
    print_listing(states, as_json, columns, lambda state: [str(state.get(c, "")) for c in columns])
