"""What the client verbs of ``deltawatch`` share: ``--timeout``, sending a command and waiting
for its one result, and one look at the subscriptions table.

``subscription`` and ``cps`` both write through the commands topic and read the compacted
subscriptions topic — callback subscriptions under ``<instance-id>/<name>``, CPS dataspaces
under ``cps/<dataspace>`` (CONTRACT §3) — so the steps live here once, each inside a
:func:`~deltawatch_tools.broker_access.kafka_session` (the broker chosen, announced, probed,
and every failure one line).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from deltawatch.command_client import CommandTimeoutError, send_command
from deltawatch.compacted_table import read_table
from deltawatch_tools.broker_access import CliError, kafka_session

DEFAULT_TIMEOUT_S = 10.0
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.1,
        help="Seconds to reach Kafka and, for a command, to get its result.",
    ),
]
CPS_KEY_PREFIX = "cps/"
"""Subscriptions-topic keys of CPS dataspace states; every other key is ``<instance>/<name>``."""
NOTIFIER = "the notifier"
"""Who creates the command topics (CONTRACT §3: workers create missing topics at start)."""


def run_command(command: dict[str, Any], timeout_s: float) -> None:
    """Send ``command``, print its result as JSON; exit 1 when it is rejected."""
    with kafka_session(timeout_s) as session:
        settings = session.settings
        session.require_topic(settings.commands_topic, "DELTAWATCH_COMMANDS_TOPIC", NOTIFIER)
        session.require_topic(
            settings.command_results_topic, "DELTAWATCH_COMMAND_RESULTS_TOPIC", NOTIFIER
        )
        try:
            result = send_command(settings, command, timeout_s)
        except CommandTimeoutError as exc:
            raise CliError(
                f"{exc}: is a notifier consuming {settings.commands_topic} "
                f"on {session.choice.bootstrap}?",
                exit_code=3,
            ) from None
    typer.echo(json.dumps(result, indent=2))
    if result.get("status") != "accepted":
        raise typer.Exit(1)


def read_states(timeout_s: float) -> dict[str, Any]:
    """Every live value of the subscriptions topic, by key, decoded from JSON.

    A topic that does not exist yet holds nothing (no notifier has run against this broker).
    """
    with kafka_session(timeout_s) as session:
        topic = session.settings.subscriptions_topic
        if topic not in session.metadata.topics:
            return {}
        table = read_table(
            session.settings, topic, None, client_id="deltawatch-cli", timeout_s=timeout_s
        )
    states: dict[str, Any] = {}
    for key, entry in table.items():
        with contextlib.suppress(json.JSONDecodeError):
            states[key] = json.loads(entry.value)
    return states


def listed_states(
    timeout_s: float, *, cps: bool, field: str, value: str | None
) -> list[dict[str, Any]]:
    """The CPS (``cps/`` keys) or the callback-subscription states, in key order; only those
    whose ``field`` equals ``value`` when it is given."""
    return [
        state
        for key, state in sorted(read_states(timeout_s).items())
        if key.startswith(CPS_KEY_PREFIX) == cps
        and isinstance(state, dict)
        and (value is None or state.get(field) == value)
    ]


def verb_group(help_text: str) -> typer.Typer:
    """A group of verbs under the root command (which alone offers shell completion)."""
    return typer.Typer(no_args_is_help=True, add_completion=False, help=help_text)


JsonFlag = Annotated[bool, typer.Option("--json", help="JSON list instead of a table")]


def print_listing(
    states: list[dict[str, Any]],
    as_json: bool,
    columns: tuple[str, ...],
    row: Callable[[dict[str, Any]], list[str]],
) -> None:
    """``states`` as a JSON list, or as a table of one ``row`` each."""
    if as_json:
        typer.echo(json.dumps(states, indent=2))
    else:
        print_table(columns, [row(state) for state in states])


def print_table(columns: tuple[str, ...], rows: list[list[str]]) -> None:
    """Left-aligned columns under a header line (just the header when there are no rows)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
