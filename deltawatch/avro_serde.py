"""Avro encoding of records on the wire, with the schemas shipped in ``schemas/`` (package data).

Without a registry, Avro *single-object encoding* (``C3 01`` + CRC-64-AVRO fingerprint + body)
lets a reader recognise the writer's schema from the bytes alone, so a record written with an
unknown schema is detected instead of being mis-decoded. With ``DELTAWATCH_SCHEMA_REGISTRY_URL``
the Confluent wire format (``00`` + 4-byte schema id + body) is used instead, as the Confluent
ecosystem expects.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any

import fastavro
import httpx
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from deltawatch.schema_files import load_schema_document

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


class AvroDecodeError(Exception):
    """Bytes that are not a record of a known schema (a poison message)."""


def load_schema(file_name: str) -> dict[str, Any]:
    """An Avro schema of ``schemas/`` as the installed package ships it."""
    return load_schema_document(file_name)


class AvroSchema:
    """A parsed schema with the identities both encodings need."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.parsed = parse_schema(raw)
        self.canonical = to_parsing_canonical_form(self.parsed)
        self.fingerprint = bytes.fromhex(fingerprint(self.canonical, "CRC-64-AVRO"))[::-1]

    def write_body(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.parsed, record)
        return out.getvalue()

    def read_body(self, body: bytes, writer: AvroSchema | None = None) -> dict[str, Any]:
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(body), (writer or self).parsed, self.parsed
            )
        except Exception as exc:
            raise AvroDecodeError(f"Avro body does not decode: {exc}") from exc
        if not isinstance(record, dict):
            raise AvroDecodeError("Avro body is not a record")
        return record


class SchemaRegistryClient:
    """The two calls of the Confluent Schema Registry REST API that a serde needs."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, AvroSchema] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema: AvroSchema) -> int:
        key = (subject, schema.canonical)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        response = self._http.post(
            f"/subjects/{subject}/versions",
            json={"schema": json.dumps(schema.raw)},
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        response.raise_for_status()
        schema_id = int(response.json()["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._by_id[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        response = self._http.get(f"/schemas/ids/{schema_id}")
        if response.status_code == 404:
            raise AvroDecodeError(f"schema id {schema_id} unknown to the registry")
        response.raise_for_status()
        schema = AvroSchema(json.loads(response.json()["schema"]))
        with self._lock:
            self._by_id[schema_id] = schema
        return schema


class AvroSerde:
    """Encodes and decodes one record type for one topic, in the configured wire format."""

    def __init__(
        self, schema: AvroSchema, topic: str, registry: SchemaRegistryClient | None = None
    ) -> None:
        self.schema = schema
        self.topic = topic
        self.registry = registry
        self._known = {schema.fingerprint: schema}

    @classmethod
    def from_file(cls, file_name: str, topic: str, registry_url: str | None) -> AvroSerde:
        registry = SchemaRegistryClient(registry_url) if registry_url else None
        return cls(AvroSchema(load_schema(file_name)), topic, registry)

    def accept_earlier_writer(self, added_fields: tuple[str, ...]) -> None:
        """Also decode single-object records written before ``added_fields`` (optional, with
        defaults) were added to the schema: their fingerprint is the older schema's, and a
        reader upgraded before its writers must not take them for poison."""
        raw = dict(self.schema.raw)
        raw["fields"] = [f for f in raw["fields"] if f["name"] not in added_fields]
        earlier = AvroSchema(raw)
        self._known[earlier.fingerprint] = earlier

    def encode(self, record: dict[str, Any]) -> bytes:
        body = self.schema.write_body(record)
        if self.registry is not None:
            schema_id = self.registry.register(f"{self.topic}-value", self.schema)
            return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + body
        return SINGLE_OBJECT_MAGIC + self.schema.fingerprint + body

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if not data:
            raise AvroDecodeError("empty record value")
        if data.startswith(SINGLE_OBJECT_MAGIC):
            writer = self._known.get(data[2:10])
            if writer is None:
                raise AvroDecodeError(
                    f"unknown schema fingerprint {data[2:10].hex()} (expected "
                    f"{self.schema.fingerprint.hex()})"
                )
            return self.schema.read_body(data[10:], writer)
        if data.startswith(CONFLUENT_MAGIC) and len(data) >= 5:
            if self.registry is None:
                raise AvroDecodeError("Confluent wire format but no schema registry configured")
            (schema_id,) = struct.unpack(">I", data[1:5])
            return self.schema.read_body(data[5:], self.registry.schema_by_id(schema_id))
        raise AvroDecodeError(f"not an Avro record (first bytes {data[:4].hex()})")
