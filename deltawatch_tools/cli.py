"""``deltawatch``: what an operator does by hand (CONTRACT §1).

Each verb group lives beside the code it drives and is only mounted here, so this module stays
a table of contents.
"""

from __future__ import annotations

import typer

from deltawatch_tools.compose_stack import compose_app
from deltawatch_tools.deltas_cli import deltas_app
from deltawatch_tools.demo.runner import demo
from deltawatch_tools.local_pipeline import run_pipeline
from deltawatch_tools.localkafka.cli import kafka_app
from deltawatch_tools.localkube.cli import kube_app
from deltawatch_tools.subscription_cli import subscription_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="deltawatch: subscriptions, the delta topic, the local broker and API server, the demo.",
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(compose_app, name="compose")
app.add_typer(kube_app, name="kube")
app.add_typer(subscription_app, name="subscription")
app.command("run")(run_pipeline)
app.add_typer(deltas_app, name="deltas")
app.command("demo")(demo)


def main() -> None:
    app()
