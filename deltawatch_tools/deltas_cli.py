"""``deltawatch deltas tail``: watch the delta topic as an operator, one event per line.

Reads ``read_committed`` — what a consumer of the pipeline would see, never an aborted
transaction's events — from every partition, from the end (default) or the beginning. The
filters are the contract's own fields: ``--instance`` is the CloudEvent subject (the
instance-id), ``--cluster`` the cluster the delta's objects live in, data ``"cluster"``, which
``ce_source`` (``/deltawatch/clusters/<cluster>``) repeats (CONTRACT §5, §10).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from cloudevents.core.v1.event import CloudEvent
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, Message, TopicPartition

from deltawatch.cloud_events import CloudEventDecodeError, from_kafka, rfc3339_ms, source_cluster
from deltawatch.kafka_clients import make_reader
from deltawatch_tools.broker_access import kafka_session
from deltawatch_tools.cli_client import DEFAULT_TIMEOUT_S, Timeout, verb_group

deltas_app = verb_group("The delta topic.")


class Output(StrEnum):
    pretty = "pretty"
    json = "json"


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
        line += f" cluster={data.get('cluster')} seq={data.get('sequence')} " + " ".join(parts)
    elif isinstance(data, dict):
        line += " " + json.dumps(data, separators=(",", ":"))
    return line


def event_cluster(attributes: dict[str, Any], data: Any) -> str | None:
    """The cluster an event speaks of: data ``"cluster"``, else the one ``source`` names."""
    if isinstance(data, dict) and isinstance(data.get("cluster"), str):
        return str(data["cluster"])
    source = str(attributes.get("source") or "")
    return source_cluster(source)


def as_json(attributes: dict[str, Any], data: Any) -> str:
    document = {k: rfc3339_ms(v) if k == "time" else v for k, v in attributes.items()}
    document["data"] = data
    return json.dumps(document, separators=(",", ":"), default=str)


def decoded(message: Message) -> CloudEvent | None:
    """The record's CloudEvent; None (and a line on stderr) for a record that is not one."""
    raw_headers = message.headers()
    headers = (
        [(k, v) for k, v in raw_headers if isinstance(v, bytes)]
        if isinstance(raw_headers, list)
        else []
    )
    try:
        return from_kafka(message.key(), message.value(), headers)
    except CloudEventDecodeError as exc:
        where = f"{message.partition()}/{message.offset()}"
        typer.echo(f"undecodable record at {where}: {exc}", err=True)
        return None


Instance = Annotated[str | None, typer.Option("--instance", "-i", help="Only this instance-id.")]
Cluster = Annotated[str | None, typer.Option("--cluster", "-c", help="Only this cluster.")]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="pretty: one readable line; json: the event.")
]
FromBeginning = Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest.")]
MaxEvents = Annotated[int, typer.Option("--max-events", help="Stop after N events (0: never).")]


@deltas_app.command("tail")
def tail(
    instance: Instance = None,
    cluster: Cluster = None,
    output: OutputOption = Output.pretty,
    from_beginning: FromBeginning = False,
    max_events: MaxEvents = 0,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """Print each CloudEvent of DELTAWATCH_DELTAS_TOPIC as it is committed."""
    with kafka_session(timeout) as session:
        topic = session.settings.deltas_topic
        session.require_topic(topic, "DELTAWATCH_DELTAS_TOPIC", "the differ")
        partitions = session.metadata.topics[topic].partitions
        reader = make_reader(session.settings, client_id="deltawatch-tail")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        reader.assign([TopicPartition(topic, p, start) for p in sorted(partitions)])
        printed = 0
        try:
            while max_events <= 0 or printed < max_events:
                message = reader.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        typer.echo(f"error: {error.str()}", err=True)
                    continue
                event = decoded(message)
                if event is None:
                    continue
                attributes, data = event.get_attributes(), event.get_data()
                if instance is not None and attributes.get("subject") != instance:
                    continue
                if cluster is not None and event_cluster(attributes, data) != cluster:
                    continue
                render = as_json if output is Output.json else describe
                typer.echo(render(attributes, data))
                printed += 1
        except KeyboardInterrupt:
            pass
        finally:
            reader.close()
