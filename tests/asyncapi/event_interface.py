"""``schemas/asyncapi.yaml`` read as a checker: does a real Kafka record fit one of its messages?

The tests hand it records the workers really wrote (a pipeline run, the CPS event writer) and
it answers which message of the record's channel the record is, or fails listing, per message,
what did not fit: the key against the message's Kafka key schema, every header against the
headers schema (and no header the document does not name), the value against the payload
(a JSON Schema file of ``schemas/``, the Avro schema, an inline schema, or ``null`` for a
tombstone). Local ``$ref`` are inlined; a payload's file reference is loaded from the package,
as a user of the document would load it next to the document.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import jsonschema
import yaml

from deltawatch.avro_serde import AvroDecodeError, AvroSerde
from deltawatch.schema_files import load_schema_document, schema_file

DOCUMENT = "asyncapi.yaml"
JSON_SCHEMA_FORMAT = "application/schema+json;version=draft-07"
AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"


def _pointer(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class EventInterface:
    """The document, its channels by id (the roles of :func:`deltawatch.topics.contract_topics`)."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = yaml.safe_load(schema_file(DOCUMENT).read_text())

    def resolved(self, node: Any) -> Any:
        """``node`` with every local ``$ref`` replaced by what it points at."""
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                return self.resolved(_pointer(self.document, ref[1:]))
            return {key: self.resolved(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.resolved(item) for item in node]
        return node

    @cached_property
    def channels(self) -> dict[str, dict[str, Any]]:
        resolved: dict[str, dict[str, Any]] = self.resolved(self.document["channels"])
        return resolved

    def messages(self, channel: str) -> dict[str, dict[str, Any]]:
        messages: dict[str, dict[str, Any]] = self.channels[channel]["messages"]
        return messages

    def identify(
        self,
        channel: str,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None,
        value: bytes | None,
    ) -> str:
        """The id of the one message of ``channel`` the record fits; AssertionError if none."""
        problems = {
            name: self.problems(channel, message, key, headers, value)
            for name, message in self.messages(channel).items()
        }
        fitting = [name for name, found in problems.items() if not found]
        assert len(fitting) == 1, f"record {key!r} on {channel} fits {fitting}: {problems}"
        return fitting[0]

    def problems(
        self,
        channel: str,
        message: dict[str, Any],
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None,
        value: bytes | None,
    ) -> list[str]:
        found: list[str] = []
        key_schema = message["bindings"]["kafka"]["key"]
        found += _errors(key_schema, None if key is None else key.decode(), "key")
        named = {name: raw.decode() for name, raw in headers or []}
        schema = message.get("headers", {"type": "object", "properties": {}})
        found += _errors(schema, named, "headers")
        found += [f"header {h} not in the document" for h in named if h not in schema["properties"]]
        found += self._payload_problems(channel, message["payload"], value)
        return found

    def _payload_problems(
        self, channel: str, payload: dict[str, Any], value: bytes | None
    ) -> list[str]:
        if payload.get("schemaFormat") == AVRO_FORMAT:
            file_name = payload["schema"]["$ref"].removeprefix("./")
            topic = self.channels[channel]["address"]
            try:
                AvroSerde.from_file(file_name, topic, None).decode(value)
            except AvroDecodeError as exc:
                return [f"payload: {exc}"]
            return []
        if payload.get("schemaFormat") == JSON_SCHEMA_FORMAT:
            file_name, _, pointer = payload["schema"]["$ref"].removeprefix("./").partition("#")
            root = load_schema_document(file_name)
            schema = {**root, **_pointer(root, pointer)} if pointer else root
            validator: type[Any] = jsonschema.Draft202012Validator
        else:
            schema, validator = payload, jsonschema.Draft7Validator
        if value is None:
            return _errors(schema, None, "payload", validator)
        try:
            data = json.loads(value)
        except ValueError as exc:
            return [f"payload is not JSON: {exc}"]
        return _errors(schema, data, "payload", validator)


def _errors(
    schema: dict[str, Any],
    instance: Any,
    what: str,
    validator: type[Any] = jsonschema.Draft7Validator,
) -> list[str]:
    return [
        f"{what} {list(error.absolute_path)}: {error.message}"
        for error in validator(schema).iter_errors(instance)
    ]
