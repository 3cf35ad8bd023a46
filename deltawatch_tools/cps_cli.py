"""``deltawatch cps subscribe|unsubscribe|list``: CPS delta notification by hand (CONTRACT §1,
§4, §7).

A subscribe or unsubscribe is a command on the commands topic, keyed by dataspace, answered by
the notifier with one result — the same path every other client takes, so the CLI cannot
disagree with the notifier about what a command means. The anchors rule is the notifier's
(README, "Subscription rule"): no ``--anchor`` means every anchor of the dataspace, present
and future, for ``subscribe``, and ends the dataspace's subscription for ``unsubscribe``.
``list`` reads the ``cps/<dataspace>`` states the notifier keeps on the compacted
subscriptions topic.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from deltawatch_tools.cli_client import (
    DEFAULT_TIMEOUT_S,
    JsonFlag,
    Timeout,
    listed_states,
    print_listing,
    run_command,
    verb_group,
)

cps_app = verb_group(
    "Subscribe and unsubscribe CPS delta notification; list the dataspaces subscribed."
)

Dataspace = Annotated[str, typer.Option("--dataspace", "-d", help="CPS dataspace name")]
Anchors = Annotated[
    list[str] | None,
    typer.Option(
        "--anchor",
        "-a",
        help="Anchor (instance-id); repeat for several. None: every anchor of the dataspace.",
    ),
]


def cps_command(action: str, dataspace: str, anchors: list[str] | None) -> dict[str, Any]:
    """The CONTRACT §4 command; ``anchors`` absent (not empty) when none are named."""
    command: dict[str, Any] = {"action": action, "dataspace": dataspace}
    if anchors:
        command["anchors"] = anchors
    return command


@cps_app.command()
def subscribe(
    dataspace: Dataspace, anchor: Anchors = None, timeout: Timeout = DEFAULT_TIMEOUT_S
) -> None:
    """Publish the anchors' deltas as CPS events; prints the result (exit 1 when rejected)."""
    run_command(cps_command("subscribe-delta-notification", dataspace, anchor), timeout)


@cps_app.command()
def unsubscribe(
    dataspace: Dataspace, anchor: Anchors = None, timeout: Timeout = DEFAULT_TIMEOUT_S
) -> None:
    """Stop the anchors' CPS events; without --anchor, end the dataspace's subscription."""
    run_command(cps_command("unsubscribe-delta-notification", dataspace, anchor), timeout)


def anchors_cell(state: dict[str, Any]) -> str:
    if state.get("all-anchors"):
        excluded = state.get("excluded-anchors") or []
        return "all" + (f" except {','.join(excluded)}" if excluded else "")
    return ",".join(state.get("anchors") or [])


@cps_app.command("list")
def list_dataspaces(
    dataspace: Annotated[
        str | None, typer.Option("--dataspace", "-d", help="only this dataspace")
    ] = None,
    as_json: JsonFlag = False,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """List the dataspaces with CPS delta notification and the anchors they subscribe."""
    print_listing(
        listed_states(timeout, cps=True, field="dataspace", value=dataspace),
        as_json,
        ("dataspace", "anchors"),
        lambda state: [str(state.get("dataspace", "")), anchors_cell(state)],
    )
