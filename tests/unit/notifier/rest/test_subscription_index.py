"""The REST facade's read model without a broker: the index the subscription directory keeps
of the compacted subscriptions topic (states by key, tombstones, never a secret)."""

from __future__ import annotations

import json
from typing import Any

from services.notifier.subscription_directory import SubscriptionIndex

URL = "http://10.0.0.5:8080/notify"


def _state(instance_id: str, name: str, **extra: Any) -> bytes:
    return json.dumps(
        {
            "name": name,
            "min-notify-interval": 10,
            "last-update-time": "2026-01-01T00:00:00.000Z",
            "callback-url": URL,
            "last-notify-time": "2026-01-01T00:00:00.000Z",
            "last-notify-status": 0,
            "metadata": {},
            "instance-id": instance_id,
            "created-at": "2026-01-01T00:00:00.000Z",
            "created-at-ms": 1767225600000,
            **extra,
        }
    ).encode()


def test_index_applies_states_and_tombstones_by_key() -> None:
    index = SubscriptionIndex()
    index.apply("i1/b", _state("i1", "b"))
    index.apply("i1/a", _state("i1", "a"))
    index.apply("i2/a", _state("i2", "a"))
    assert [s["name"] for s in index.of_instance("i1")] == ["a", "b"]
    index.apply("i1/a", _state("i1", "a", **{"last-notify-status": 204}))
    found = index.get("i1", "a")
    assert found is not None
    assert found["last-notify-status"] == 204
    index.apply("i1/a", None)
    index.apply("i1/b", None)
    assert index.of_instance("i1") == []
    assert index.get("i1", "a") is None
    assert index.by_instance == {"i2": {"a": "i2/a"}}
    assert len(index) == 1


def test_index_ignores_cps_records_foreign_keys_and_garbage() -> None:
    index = SubscriptionIndex()
    index.apply("cps/ds1", b'{"dataspace": "ds1", "all": true, "anchors": []}')
    index.apply("i1/x", _state("i1", "y"))
    index.apply("i1/z", b"\x00 not json")
    assert len(index) == 0
    index.apply("i1/a", _state("i1", "a"))
    index.apply("i1/a", b"{}")  # a value that is not a state replaces it: the key is gone
    assert index.get("i1", "a") is None


def test_index_never_shows_a_secret() -> None:
    index = SubscriptionIndex()
    index.apply("i1/a", _state("i1", "a", secret="whsec_abc", signed=True))
    found = index.get("i1", "a")
    assert found is not None
    assert "secret" not in found
    assert found["signed"] is True
