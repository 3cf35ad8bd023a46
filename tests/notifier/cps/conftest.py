"""Harness for the CPS wiring tests: the notifier harness of ``tests/notifier`` plus a reader
of the CPS topic that sees only committed events (``read_committed``) and decodes them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from deltawatch.schema_files import load_schema_document
from deltawatch.settings import CommonSettings
from tests.fixtures.kafka import committed_records
from tests.notifier.conftest import (  # noqa: F401  (fixtures re-exported for this directory)
    Commands,
    Deltas,
    NotifierProcess,
    commands,
    deltas,
    notifier,
    notifier_env,
    pod,
    settings,
)

DATA_SCHEMAS = {
    "org.onap.cps.data-updated-delta-event": "cps-delta-event-data.schema.json",
    "org.onap.cps.events.model.CpsDataUpdatedEvent": "cps-data-updated-event.schema.json",
}


@dataclass(frozen=True)
class CpsRecord:
    key: str
    headers: dict[str, str]
    data: dict[str, Any]
    timestamp_ms: int
    partition: int
    offset: int

    @property
    def id(self) -> str:
        return self.headers["ce_id"]

    @property
    def anchor(self) -> str:
        payload = self.data.get("eventPayload", self.data)
        return str(payload["anchorName"])


def _validate(record: CpsRecord) -> None:
    schema = load_schema_document(DATA_SCHEMAS[record.headers["ce_type"]])
    jsonschema.validate(record.data, schema)


def read_cps(config: CommonSettings) -> list[CpsRecord]:
    """Every committed record of the CPS topic (each partition read to its end), validated."""
    records: list[CpsRecord] = []
    for message in committed_records(config, config.cps_topic):
        headers = {name: raw.decode() for name, raw in message.headers() or [] if raw is not None}
        record = CpsRecord(
            key=bytes(message.key() or b"").decode(),
            headers=headers,
            data=json.loads(message.value() or b"null"),
            timestamp_ms=message.timestamp()[1],
            partition=message.partition() or 0,
            offset=message.offset() or 0,
        )
        _validate(record)
        records.append(record)
    return sorted(records, key=lambda r: (r.timestamp_ms, r.partition, r.offset))


def wait_cps(
    config: CommonSettings,
    until: Callable[[list[CpsRecord]], bool],
    timeout_s: float = 30.0,
) -> list[CpsRecord]:
    """The CPS topic's committed records once ``until`` holds for them."""
    deadline = time.monotonic() + timeout_s
    records: list[CpsRecord] = []
    while time.monotonic() < deadline:
        records = read_cps(config)
        if until(records):
            return records
        time.sleep(0.2)
    shown = [(r.key, r.data.get("operation"), len(r.data.get("data") or [])) for r in records]
    raise AssertionError(f"CPS topic never satisfied the condition; got {shown[-20:]}")


def of_anchor(records: list[CpsRecord], anchor: str) -> list[CpsRecord]:
    return [r for r in records if r.anchor == anchor]
