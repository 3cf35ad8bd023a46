"""``deltawatch``: what an operator does by hand (CONTRACT §1).

Each verb group lives beside the code it drives and is only mounted here, so this module stays
a table of contents — plus the one rule every verb obeys: a failure is one line on stderr
(``error: …``) and a non-zero exit, never a traceback, unless ``--debug`` asks for it (and
for librdkafka's own log, which otherwise stays out of the terminal).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from deltawatch_tools.broker_access import LIBRDKAFKA_LOGGER, CliError
from deltawatch_tools.compose_stack import compose_app
from deltawatch_tools.cps_cli import cps_app
from deltawatch_tools.deltas_cli import deltas_app
from deltawatch_tools.demo.runner import demo
from deltawatch_tools.local_pipeline import run_pipeline
from deltawatch_tools.localkafka.cli import kafka_app
from deltawatch_tools.localkube.cli import kube_app
from deltawatch_tools.subscription_cli import subscription_app


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (the type's name when it has none)."""
    kafka_error = exc.args[0] if exc.args and hasattr(exc.args[0], "str") else None
    text = str(kafka_error.str()) if kafka_error is not None else str(exc)  # KafkaException
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if isinstance(exc, CliError):
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def usage_line(exc: Exception) -> str | None:
    """One line for a usage error (a missing or bad option, an unknown verb); None for other
    exceptions and for the "no arguments: show help" signal (recognised by name, as typer
    itself does: its click is vendored, its classes private)."""
    if type(exc).__name__ == "NoArgsIsHelpError" or getattr(exc, "exit_code", None) != 2:
        return None
    format_message = getattr(exc, "format_message", None)
    if format_message is None:
        return None
    message = " ".join(str(format_message()).split())
    command = getattr(getattr(exc, "ctx", None), "command_path", None)
    return f"{message} (see '{command} --help')" if command else message


class OneLineErrors(TyperGroup):
    """The root group: whatever a verb raises becomes ``error: <one line>`` and an exit code
    (2 for a usage error, as click has it).

    The root's own options are parsed before any verb runs, so ``--debug`` is known here.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context is not public
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:
            line = usage_line(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(exc.exit_code if isinstance(exc, CliError) else 1) from None


def configure_logging(debug: bool) -> None:
    """``--debug``: every log line (librdkafka's included) on stderr; otherwise none of
    librdkafka's (a logger without a handler would fall back to printing warnings)."""
    librdkafka = logging.getLogger(LIBRDKAFKA_LOGGER)
    librdkafka.propagate = debug
    if debug:
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return
    if not librdkafka.handlers:
        librdkafka.addHandler(logging.NullHandler())


app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="deltawatch: subscriptions, CPS, the delta topic, the local broker and API server, "
    "the demo. Client commands (subscription, cps, deltas) use KAFKA_BOOTSTRAP_SERVERS, else "
    "the local broker of 'deltawatch kafka start' when it runs, else localhost:9092.",
)


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show librdkafka's log and tracebacks on stderr.")
    ] = False,
) -> None:
    """Options for every verb (given before it: ``deltawatch --debug cps list``)."""
    configure_logging(debug)


app.add_typer(kafka_app, name="kafka")
app.add_typer(compose_app, name="compose")
app.add_typer(kube_app, name="kube")
app.add_typer(subscription_app, name="subscription")
app.add_typer(cps_app, name="cps")
app.command("run")(run_pipeline)
app.add_typer(deltas_app, name="deltas")
app.command("demo")(demo)


def main() -> None:
    app()
