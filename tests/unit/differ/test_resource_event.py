"""The edge check of a decoded record, and the JSON forms the differ persists.

The digest and the changelog keys are persisted: a change in how they are spelt would make every
stored resource look modified (or leave a second, never-compacted key) after an upgrade. The
property test pins the orjson spelling to the standard library's for everything Kubernetes
serves except floats.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltawatch.resource_identity import EventType, ResourceKey
from services.differ.changelog_codec import encode_outcome
from services.differ.resource_diff import BatchOutcome
from services.differ.resource_event import PoisonRecord, parse_resource_event
from services.differ.snapshot import SnapshotEntry, compact_json, content_digest

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "ADDED",
        "cluster": "c1",
        "instance_id": "i1",
        "group": "",
        "version": "v1",
        "kind": "Pod",
        "namespace": "ns",
        "name": "web-0",
        "uid": "u1",
        "resource_version": "7",
        "observed_at": T0,
        "list_id": None,
        "list_reason": None,
        "object": '{"metadata":{"name":"web-0"},"status":{"phase":"Running"}}',
    }
    base.update(changes)
    return base


def test_a_good_record_keeps_its_text_and_parsed_object() -> None:
    event = parse_resource_event(record())
    assert event.type is EventType.ADDED
    assert event.object == {"metadata": {"name": "web-0"}, "status": {"phase": "Running"}}
    assert event.object_text == record()["object"]
    assert event.observed_at == T0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"object": "{not json"}, "not valid JSON"),
        ({"object": '{"a": NaN}'}, "not valid JSON"),
        ({"object": '{"a": 1E400}'}, "not valid JSON"),
        ({"object": '{"a": "\\ud800"}'}, "not valid JSON"),
        ({"object": "[1, 2]"}, "not a JSON object"),
        ({"object": None}, "without object"),
        ({"type": "BOGUS"}, "unknown event type"),
        ({"instance_id": None}, "without instance_id"),
        ({"name": ""}, "without name"),
        ({"kind": ""}, "must not be empty"),
        ({"type": "LISTED"}, "LISTED event without list_id"),
        ({"type": "LIST_BEGIN", "instance_id": None, "object": None}, "marker without list_id"),
        ({"observed_at": "yesterday"}, "not a timestamp"),
    ],
)
def test_unusable_records_are_poison_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(PoisonRecord, match=reason):
        parse_resource_event(record(**changes))


def _stdlib_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


JSON_WITHOUT_FLOATS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), JSON_WITHOUT_FLOATS, max_size=6))
def test_digest_and_compact_json_spell_json_as_earlier_versions_did(obj: dict[str, Any]) -> None:
    assert content_digest(obj) == hashlib.blake2b(_stdlib_canonical(obj), digest_size=16).digest()
    assert compact_json(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1), min_size=7, max_size=7))
def test_changelog_keys_are_json_arrays_of_the_resource_key(parts: list[str]) -> None:
    instance_id, *rest = parts
    key = ResourceKey(*rest[:6])
    entry = SnapshotEntry("u", b"d", b"t", None)
    slot = (instance_id, key)
    outcome = BatchOutcome(resource_writes={slot: entry}, body_writes={slot: b"{}"})
    [(record_key, _value)] = encode_outcome(outcome)
    expected = json.dumps(["r", instance_id, *key], separators=(",", ":"), ensure_ascii=False)
    assert record_key == expected.encode()
