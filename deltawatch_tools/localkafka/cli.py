"""``deltawatch kafka start|stop|status|restart``: the local broker for tests and the demo."""

from __future__ import annotations

import typer

from deltawatch_tools.localkafka.broker import LocalKafkaBroker

kafka_app = typer.Typer(help="Run the local single-node Apache Kafka (KRaft) broker.")


@kafka_app.command()
def start(port: int = typer.Option(0, help="Listener port; 0 picks a free one.")) -> None:
    """Start the broker (or find the running one) and print its bootstrap address."""
    state = LocalKafkaBroker().start(port=port or None)
    typer.echo(state.bootstrap)


@kafka_app.command()
def stop() -> None:
    """Stop the broker started from this cache (by PID) and delete its data."""
    if not LocalKafkaBroker().stop():
        typer.echo("no local broker running", err=True)


@kafka_app.command()
def status() -> None:
    """Print the bootstrap address; exit 1 when no broker is running."""
    state = LocalKafkaBroker().status()
    if state is None:
        typer.echo("not running", err=True)
        raise typer.Exit(1)
    typer.echo(state.bootstrap)


@kafka_app.command()
def restart() -> None:
    """Stop and start the running broker on the same port, keeping its data."""
    typer.echo(LocalKafkaBroker().restart().bootstrap)
