"""``deltawatch subscription …``: the operator's hand on subscriptions (CONTRACT §1, §4).

Writes go through the commands topic like every other client's (a fresh command-id, then
wait for the one result), so the CLI can never disagree with the notifier. Reads come from
the compacted subscriptions topic, read from the beginning to its end, and show what the
notifier last recorded, ``last-notify-time`` / ``last-notify-status`` included.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaError, KafkaException

from deltawatch.command_client import CommandTimeoutError, send_command
from deltawatch.compacted_table import read_table
from deltawatch.settings import CommonSettings, SettingsError, load_settings

subscription_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Create, update, delete, get and list callback subscriptions.",
)

Instance = Annotated[str, typer.Option("--instance", "-i", help="instance-id")]
Name = Annotated[str, typer.Option("--name", "-n", help="subscription name")]
Timeout = Annotated[float, typer.Option(help="seconds to wait for the command's result")]


def _settings() -> CommonSettings:
    try:
        return load_settings(CommonSettings)
    except SettingsError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


def _run(command: dict[str, Any], timeout_s: float) -> None:
    try:
        result = send_command(_settings(), command, timeout_s)
    except CommandTimeoutError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps(result, indent=2))
    if result.get("status") != "accepted":
        raise typer.Exit(1)


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
        typer.echo(f"--metadata is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
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
                typer.echo(f"--extra-resource-type {text!r}: use group/version/Kind", err=True)
                raise typer.Exit(2)
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
    _run({"action": action, "instance-id": instance, "subscription": subscription}, timeout)


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
    timeout: Timeout = 30.0,
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
    timeout: Timeout = 30.0,
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
def delete(instance: Instance, name: Name, timeout: Timeout = 30.0) -> None:
    """Delete a subscription."""
    _run({"action": "delete", "instance-id": instance, "subscription-name": name}, timeout)


def read_subscriptions(settings: CommonSettings, timeout_s: float = 30.0) -> dict[str, Any]:
    """Every live subscription state on the compacted topic, by key."""
    topic = settings.subscriptions_topic
    try:
        table = read_table(settings, topic, None, client_id="deltawatch-cli", timeout_s=timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return {}
        raise RuntimeError(f"reading {topic} failed: {exc}") from exc
    except RuntimeError:  # the topic has no partitions: it does not exist
        return {}
    states: dict[str, Any] = {}
    for key, entry in table.items():
        with contextlib.suppress(json.JSONDecodeError):
            states[key] = json.loads(entry.value)
    return states


@subscription_app.command()
def get(instance: Instance, name: Name) -> None:
    """Show one subscription as the notifier last recorded it."""
    state = read_subscriptions(_settings()).get(f"{instance}/{name}")
    if state is None:
        typer.echo(f"subscription {name!r} of instance {instance!r} does not exist", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(state, indent=2))


@subscription_app.command("list")
def list_subscriptions(
    instance: Annotated[
        str | None, typer.Option("--instance", "-i", help="only this instance")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON list instead of a table")] = False,
) -> None:
    """List subscriptions with their last notification time and status."""
    states = [
        state
        for key, state in sorted(read_subscriptions(_settings()).items())
        if not key.startswith("cps/") and (instance is None or state.get("instance-id") == instance)
    ]
    if as_json:
        typer.echo(json.dumps(states, indent=2))
        return
    columns = (
        "instance-id",
        "name",
        "min-notify-interval",
        "last-notify-time",
        "last-notify-status",
        "callback-url",
    )
    rows = [[str(state.get(c, "")) for c in columns] for state in states]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        sys.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        sys.stdout.write("\n")
