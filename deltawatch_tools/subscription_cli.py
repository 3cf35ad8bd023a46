"""``deltawatch subscription …``: the operator's hand on subscriptions (CONTRACT §1, §4).

Writes go through the commands topic like every other client's (a fresh command-id, then
wait for the one result), so the CLI can never disagree with the notifier. Reads come from
the compacted subscriptions topic, read from the beginning to its end, and show what the
notifier last recorded, ``last-notify-time`` / ``last-notify-status`` included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


def _gvk(text: str, option: str) -> dict[str, str]:
    """``group/version/Kind`` (``version/Kind`` for the core group) → ``{group,version,kind}``."""
    parts = text.split("/")
    if len(parts) == 2:
        parts = ["", *parts]
    if len(parts) != 3:
        raise CliError(f"{option} {text!r}: use group/version/Kind", exit_code=2)
    return {"group": parts[0], "version": parts[1], "kind": parts[2]}


def subscription_body(
    name: str,
    url: str,
    interval: int,
    metadata: str,
    secret: str | None = None,
    **lists: list[str] | None,
) -> dict[str, Any]:
    """The command's ``subscription`` from the options; an option not given is left out.

    ``lists`` holds the repeatable options by their parameter name (``extra_resource_type``,
    ``ignore_field``, ``kind``, ``namespace``, ``exclude_namespace``) and ``change_types``
    (comma-separated), so the notifier, not the CLI, judges every value.
    """
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
    for option, field in _LIST_FIELDS.items():
        values = lists.get(option)
        if values:
            body[field] = _listed(option, values)
    return body


_LIST_FIELDS = {
    "extra_resource_type": "extra-resource-types",
    "ignore_field": "ignore-fields",
    "change_types": "change-types",
    "kind": "kinds",
    "namespace": "namespaces",
    "exclude_namespace": "exclude-namespaces",
}


def _listed(option: str, values: list[str]) -> list[Any]:
    flag = "--" + option.replace("_", "-")
    if option in ("extra_resource_type", "kind"):
        return [_gvk(text, flag) for text in values]
    if option == "change_types":
        return [part.strip() for text in values for part in text.split(",") if part.strip()]
    return values


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
ChangeTypes = Annotated[
    list[str] | None,
    typer.Option("--change-types", help="only these changes: created,modified,deleted"),
]
Kinds = Annotated[
    list[str] | None, typer.Option("--kind", help="only this kind: group/version/Kind")
]
Namespaces = Annotated[list[str] | None, typer.Option("--namespace", help="only this namespace")]
ExcludeNamespaces = Annotated[
    list[str] | None, typer.Option("--exclude-namespace", help="never this namespace")
]
IncludePatch = Annotated[
    bool, typer.Option("--include-patch", help="modified entries carry a merge patch")
]


def _upsert_verb(action: str, doc: str) -> Callable[..., None]:
    """The ``create`` or ``update`` verb: the same options, one action each."""

    def verb(
        instance: Instance,
        name: Name,
        url: URL,
        interval: Interval = 0,
        metadata: Metadata = "{}",
        secret: Secret = None,
        extra_resource_type: ExtraTypes = None,
        ignore_field: IgnoreFields = None,
        change_types: ChangeTypes = None,
        kind: Kinds = None,
        namespace: Namespaces = None,
        exclude_namespace: ExcludeNamespaces = None,
        include_patch: IncludePatch = False,
        timeout: Timeout = DEFAULT_TIMEOUT_S,
    ) -> None:
        subscription = subscription_body(
            name,
            url,
            interval,
            metadata,
            secret,
            extra_resource_type=extra_resource_type,
            ignore_field=ignore_field,
            change_types=change_types,
            kind=kind,
            namespace=namespace,
            exclude_namespace=exclude_namespace,
        )
        if include_patch:
            subscription["include-patch"] = True
        command = {"action": action, "instance-id": instance, "subscription": subscription}
        run_command(command, timeout)

    verb.__doc__ = doc
    return verb


subscription_app.command("create")(
    _upsert_verb("create", "Create a subscription; prints the result (exit 1 when rejected).")
)
subscription_app.command("update")(
    _upsert_verb("update", "Replace a subscription's settings (as the seed's Update does).")
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
