"""``deltawatch``: what an operator does by hand (CONTRACT §1).

Each verb group lives beside the code it drives and is only mounted here, so this module stays
a table of contents.
"""

from __future__ import annotations

import typer

from deltawatch.local_pipeline import run_pipeline
from deltawatch.localkafka.cli import kafka_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(kafka_app, name="kafka")
app.command("run")(run_pipeline)

try:  # mounted once the local API server module exists
    from deltawatch.localkube.cli import kube_app

    app.add_typer(kube_app, name="kube")
except ImportError:  # pragma: no cover
    pass


def main() -> None:
    app()
