"""``schemas/asyncapi.yaml`` is a valid AsyncAPI 3.0 document that names what the code does.

Validity is the official parser's verdict (npm ``@asyncapi/parser`` with its Avro schema
parser, installed into the cache on first use by :mod:`deltawatch_tools.asyncapi_parser`),
with a broken copy to show that the verdict can be "no". Agreement with the code is checked
against the code's own definitions: the topics and their layout (``deltawatch/topics.py``,
the settings' defaults), the CloudEvents types, sources and data schemas the differ and the
notifier write, the schema files shipped, and which topics each worker's code uses. That the
records fit the messages is checked on real records: ``tests/e2e/test_event_interface.py``
and ``tests/notifier/cps/test_cps_event_writer.py``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deltawatch import cloud_events
from deltawatch.schema_files import SOURCE_DIR, schema_names
from deltawatch.settings import CommonSettings
from deltawatch.topics import contract_topics
from deltawatch_tools.asyncapi_parser import WARNING, parse
from services.notifier.cps import events as cps_events
from tests.asyncapi.event_interface import DOCUMENT, EventInterface

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("watcher", "differ", "notifier")


@pytest.fixture(scope="module")
def interface() -> EventInterface:
    return EventInterface()


def test_the_parser_accepts_the_document() -> None:
    report = parse(SOURCE_DIR / DOCUMENT)
    assert report.parsed
    assert [str(d) for d in report.at_least(WARNING)] == []


@pytest.mark.parametrize(
    ("file_name", "old", "new"),
    [
        # The control: the copy itself, unchanged, is accepted.
        (DOCUMENT, "asyncapi: 3.0.0", "asyncapi: 3.0.0"),
        # A message the channel names but nobody defines: an unresolvable $ref.
        (DOCUMENT, "$ref: '#/components/messages/deadLetter'", "$ref: '#/components/messages/x'"),
        # A payload that is not valid Avro: the Avro schema parser must be at work.
        ("resource-event.avsc", '"type": "record"', '"type": "no-such-avro-type"'),
        # A JSON Schema that is not one (a type that does not exist).
        ("dead-letter.schema.json", '"type": "object"', '"type": "no-such-type"'),
    ],
)
def test_the_parser_rejects_a_broken_copy_and_only_that(
    tmp_path: Path, file_name: str, old: str, new: str
) -> None:
    copy = tmp_path / "schemas"
    shutil.copytree(SOURCE_DIR, copy)
    text = (copy / file_name).read_text()
    assert old in text
    (copy / file_name).write_text(text.replace(old, new, 1))
    report = parse(copy / DOCUMENT)
    broken = not report.parsed or bool(report.at_least(WARNING))
    assert broken == (old != new), report


def test_channels_are_the_contract_topics_with_their_layout(interface: EventInterface) -> None:
    topics = contract_topics(CommonSettings())
    assert set(interface.channels) == set(topics)
    for role, spec in topics.items():
        channel = interface.channels[role]
        binding = channel["bindings"]["kafka"]
        assert channel["address"] == binding["topic"] == spec.name, role
        assert binding["partitions"] == spec.partitions, role
        compacted = binding.get("topicConfiguration", {}).get("cleanup.policy") == ["compact"]
        assert compacted == spec.compacted, role
        variable = f"DELTAWATCH_{role.upper()}_TOPIC"
        assert channel["description"].startswith(variable), role


def _header_const(message: dict[str, Any], header: str) -> str | None:
    const: str | None = (
        message.get("headers", {}).get("properties", {}).get(header, {}).get("const")
    )
    return const


def test_cloudevent_headers_are_the_ones_the_code_writes(interface: EventInterface) -> None:
    deltas = interface.messages("deltas")
    assert {m: _header_const(deltas[m], "ce_type") for m in deltas} == {
        "delta": cloud_events.DELTA_TYPE,
        "synced": cloud_events.SYNCED_TYPE,
        "heartbeat": cloud_events.HEARTBEAT_TYPE,
    }
    cps = interface.messages("cps")
    assert {m: _header_const(cps[m], "ce_type") for m in cps} == {
        "cpsDeltaEvent": cps_events.CPS_DELTA_TYPE,
        "cpsDataUpdatedEvent": cps_events.CPS_TYPE,
    }
    assert _header_const(cps["cpsDeltaEvent"], "ce_source") == cps_events.CPS_DELTA_SOURCE
    assert _header_const(cps["cpsDataUpdatedEvent"], "ce_source") == cps_events.CPS_SOURCE
    assert _header_const(cps["cpsDeltaEvent"], "ce_dataschema") == cps_events.CPS_DELTA_DATASCHEMA
    assert _header_const(cps["cpsDataUpdatedEvent"], "ce_dataschema") == cps_events.CPS_DATASCHEMA
    for message in [*deltas.values(), *cps.values()]:
        assert _header_const(message, "ce_specversion") == "1.0"
        assert _header_const(message, "content-type") == cloud_events.JSON


def test_every_schema_file_is_named_and_every_named_file_is_shipped(
    interface: EventInterface,
) -> None:
    named = {
        ref.removeprefix("./").partition("#")[0]
        for ref in re.findall(r"\$ref: '(\./[^']+)'", (SOURCE_DIR / DOCUMENT).read_text())
    }
    # openapi.json describes the REST facade, not a topic.
    assert named == set(schema_names()) - {DOCUMENT, "openapi.json"}


def _topic_roles_used_by(worker: str) -> set[str]:
    """The contract topics a worker's code names through its settings (``<role>_topic``)."""
    roles = set(contract_topics(CommonSettings()))
    text = "\n".join(p.read_text() for p in (ROOT / "services" / worker).rglob("*.py"))
    return {role for role in roles if re.search(rf"\b{role}_topic\b", text)}


def test_each_worker_sends_and_receives_the_topics_its_code_uses(
    interface: EventInterface,
) -> None:
    operations: dict[str, Any] = yaml.safe_load((SOURCE_DIR / DOCUMENT).read_text())["operations"]
    for worker in WORKERS:
        documented = {
            operation["channel"]["$ref"].removeprefix("#/channels/")
            for operation in operations.values()
            if {"name": worker} in operation["tags"]
        }
        assert documented == _topic_roles_used_by(worker), worker
    for name, operation in operations.items():
        owner = name.split(".", 1)[0]
        assert operation["tags"] == [{"name": owner}], name
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"#/channels/{channel}/messages/"), name
            assert message["$ref"].rsplit("/", 1)[1] in interface.messages(channel), name
