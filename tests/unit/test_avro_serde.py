"""Avro serde in both wire formats.

No real Confluent Schema Registry can be installed here (it is not on PyPI, Maven Central's
artifacts need Confluent's own repository), so the registry mode is tested against a small
in-test HTTP double that implements the two REST calls the serde uses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from deltawatch.avro_serde import AvroDecodeError, AvroSchema, AvroSerde, load_schema

RECORD: dict[str, Any] = {
    "type": "MODIFIED",
    "cluster": "c1",
    "instance_id": "inst-1",
    "group": "apps",
    "version": "v1",
    "kind": "Deployment",
    "namespace": "ns",
    "name": "web",
    "uid": "u-1",
    "resource_version": "42",
    "observed_at": 1795550000123,
    "list_id": None,
    "list_reason": None,
    "object": json.dumps({"metadata": {"name": "web"}, "spec": {"replicas": 3}}),
    "leader_epoch": 7,
    "leader_lease": "deltawatch/deltawatch-watcher-c1",
}


def _normalise(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    observed = out["observed_at"]
    if not isinstance(observed, int):
        out["observed_at"] = int(observed.timestamp() * 1000)
    return out


def test_single_object_encoding_round_trip() -> None:
    serde = AvroSerde.from_file("resource-event.avsc", "t", registry_url=None)
    data = serde.encode(RECORD)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == serde.schema.fingerprint
    assert _normalise(serde.decode(data)) == RECORD


def test_unknown_fingerprint_and_garbage_are_refused() -> None:
    serde = AvroSerde.from_file("resource-event.avsc", "t", registry_url=None)
    other = AvroSchema({"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]})
    foreign = b"\xc3\x01" + other.fingerprint + other.write_body({"a": 1})
    with pytest.raises(AvroDecodeError, match="unknown schema fingerprint"):
        serde.decode(foreign)
    with pytest.raises(AvroDecodeError):
        serde.decode(b"\x07garbage")
    with pytest.raises(AvroDecodeError):
        serde.decode(b"")


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    # Avro spec test vector: CRC-64-AVRO of "int" is 0x8f5c393f1ad57572, written little-endian.
    assert AvroSchema("int").fingerprint == bytes.fromhex("7275d51a3f395c8f")  # type: ignore[arg-type]


class _RegistryDouble(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = {text: sid for sid, text in self.schemas.items()}
        schema_id = ids.get(body["schema"]) or len(self.schemas) + 1
        self.schemas[schema_id] = body["schema"]
        self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        schema_id = int(self.path.rsplit("/", 1)[1])
        if schema_id in self.schemas:
            self._reply(200, {"schema": self.schemas[schema_id]})
        else:
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _RegistryDouble.schemas = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RegistryDouble)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_confluent_wire_format_round_trip(registry_url: str) -> None:
    writer = AvroSerde.from_file("resource-event.avsc", "events", registry_url)
    data = writer.encode(RECORD)
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == 1
    assert json.loads(_RegistryDouble.schemas[1]) == load_schema("resource-event.avsc")
    reader = AvroSerde.from_file("resource-event.avsc", "events", registry_url)
    assert _normalise(reader.decode(data)) == RECORD
    with pytest.raises(AvroDecodeError, match="unknown to the registry"):
        reader.decode(b"\x00\x00\x00\x00\x63" + data[5:])


def test_a_reader_upgraded_first_decodes_records_of_the_schema_before_leader_epoch() -> None:
    raw = load_schema("resource-event.avsc")
    added = ("leader_epoch", "leader_lease")
    before = dict(raw, fields=[f for f in raw["fields"] if f["name"] not in added])
    old_writer = AvroSerde(AvroSchema(before), "t")
    record = {
        "type": "LIST_BEGIN",
        "cluster": "east",
        "group": "",
        "version": "v1",
        "kind": "Pod",
        "resource_version": "1",
        "observed_at": 0,
        "list_id": "l-1",
    }
    reader = AvroSerde.from_file("resource-event.avsc", "t", None)
    reader.accept_earlier_writer(added)
    decoded = reader.decode(old_writer.encode(record))
    assert decoded["leader_epoch"] is None
    assert decoded["list_id"] == "l-1"
