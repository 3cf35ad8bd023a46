"""``deltawatch deltas tail``: watch the delta topic as an operator, one event per line.

Reads ``read_committed`` — what a consumer of the pipeline would see, never an aborted
transaction's events — from every partition, from the end (default) or the beginning.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, TopicPartition

from deltawatch.cloud_events import CloudEventDecodeError, from_kafka, rfc3339_ms
from deltawatch.kafka_clients import make_admin, make_reader
from deltawatch.settings import CommonSettings, SettingsError, load_settings
from deltawatch.topics import partition_count

deltas_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The delta topic.")


def describe(attributes: dict[str, Any], data: Any) -> str:
    """One readable line: time, type, subject, id and the delta's change counts."""
    kind = str(attributes.get("type", "?")).rsplit(".", 1)[-1]
    subject = attributes.get("subject") or "-"
    time = attributes.get("time")
    stamp = rfc3339_ms(time) if time is not None else "-"
    line = f"{stamp} {kind:<9} {subject} id={attributes.get('id')}"
    if isinstance(data, dict) and isinstance(data.get("resource-changes"), dict):
        rc = data["resource-changes"]
        parts = []
        for change in ("created", "deleted", "modified"):
            for entry in rc.get(change, []):
                gvk = entry.get("GVK", {})
                parts.append(
                    f"{change[0]}:{gvk.get('Kind')}/{entry.get('namespace')}/{entry.get('name')}"
                )
        line += f" seq={data.get('sequence')} " + " ".join(parts)
    elif isinstance(data, dict):
        line += " " + json.dumps(data, separators=(",", ":"))
    return line


@deltas_app.command("tail")
def tail(
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest."),
    max_events: int = typer.Option(0, "--max-events", help="Stop after N events (0: never)."),
    instance: str | None = typer.Option(None, "--instance", help="Only this instance-id."),
    as_json: bool = typer.Option(False, "--json", help="Print each event as one JSON object."),
) -> None:
    """Print each CloudEvent of DELTAWATCH_DELTAS_TOPIC as it is committed."""
    try:
        settings = load_settings(CommonSettings)
    except SettingsError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    topic = settings.deltas_topic
    count = partition_count(make_admin(settings), topic)
    reader = make_reader(settings, client_id="deltawatch-tail")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    reader.assign([TopicPartition(topic, p, start) for p in range(count)])
    printed = 0
    try:
        while max_events <= 0 or printed < max_events:
            message = reader.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    typer.echo(f"error: {error}", err=True)
                continue
            try:
                raw_headers = message.headers()
                headers = (
                    [(k, v) for k, v in raw_headers if isinstance(v, bytes)]
                    if isinstance(raw_headers, list)
                    else []
                )
                event = from_kafka(message.key(), message.value(), headers)
            except CloudEventDecodeError as exc:
                typer.echo(
                    f"undecodable record at {message.partition()}/{message.offset()}: {exc}",
                    err=True,
                )
                continue
            attributes = event.get_attributes()
            if instance is not None and attributes.get("subject") != instance:
                continue
            if as_json:
                document = {k: rfc3339_ms(v) if k == "time" else v for k, v in attributes.items()}
                document["data"] = event.get_data()
                typer.echo(json.dumps(document, separators=(",", ":"), default=str))
            else:
                typer.echo(describe(attributes, event.get_data()))
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
