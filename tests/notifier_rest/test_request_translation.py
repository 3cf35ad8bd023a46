"""The REST facade's pure parts: seed-compatible body checks, status mapping, the read model,
and the checked-in OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.notifier.rest_api import (
    OPENAPI_FILE,
    ApiError,
    rendered_openapi,
    status_of_rejection,
    subscription_from_body,
)
from services.notifier.subscription_directory import SubscriptionIndex

URL = "http://10.0.0.5:8080/notify"


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "empty-body"),
        (b"  \n", 400, "empty-body"),
        (b"{", 422, "malformed-json"),
        (b"not json", 422, "malformed-json"),
        (b'{"name": NaN}', 422, "malformed-json"),
        (b"[1, 2]", 422, "malformed-json"),
        (b'"text"', 422, "malformed-json"),
        (b"\xff\xfe", 422, "malformed-json"),
        (b"[" * 100_000, 422, "malformed-json"),
        (body(name=5, **{"callback-url": URL}), 422, "invalid-field"),
        (body(name="s", **{"callback-url": ["x"]}), 422, "invalid-field"),
        (
            body(name="s", **{"callback-url": URL, "min-notify-interval": "10"}),
            422,
            "invalid-field",
        ),
        (body(name="s", **{"callback-url": URL, "min-notify-interval": 1.5}), 422, "invalid-field"),
        (
            body(name="s", **{"callback-url": URL, "min-notify-interval": True}),
            422,
            "invalid-field",
        ),
        (
            body(name="s", **{"callback-url": URL, "min-notify-interval": 2**31}),
            422,
            "invalid-field",
        ),
        (body(name="s", metadata=[1], **{"callback-url": URL}), 422, "invalid-field"),
        (body(name="s", metadata="x", **{"callback-url": URL}), 422, "invalid-field"),
        (body(name="s", **{"callback-url": URL, "instance-id": 3}), 422, "invalid-field"),
        (body(**{"callback-url": URL}), 400, "invalid-name"),
        (body(name="", **{"callback-url": URL}), 400, "invalid-name"),
        (body(name=None, **{"callback-url": URL}), 400, "invalid-name"),
        (b"null", 400, "invalid-name"),
        (b"{}", 400, "invalid-name"),
        (
            body(name="s", **{"callback-url": URL, "min-notify-interval": -1}),
            400,
            "invalid-interval",
        ),
        (
            body(name="s", **{"callback-url": URL, "min-notify-interval": -(2**31)}),
            400,
            "invalid-interval",
        ),
        (body(name="s"), 400, "invalid-url"),
        (body(name="s", **{"callback-url": ""}), 400, "invalid-url"),
        (body(name="s", **{"callback-url": None}), 400, "invalid-url"),
        (body(name="s", **{"callback-url": URL, "instance-id": "other"}), 400, "invalid-field"),
    ],
)
def test_create_body_errors_follow_the_seed(raw: bytes, status: int, code: str) -> None:
    result = subscription_from_body(raw, "inst-1")
    assert isinstance(result, ApiError), result
    assert (result.status, result.code) == (status, code)
    response = result.response()
    assert response.status_code == status
    assert json.loads(bytes(response.body))["error"]["code"] == code


def test_create_body_normalises_nulls_like_go_zero_values() -> None:
    raw = body(name="s", metadata=None, **{"callback-url": URL, "min-notify-interval": None})
    assert subscription_from_body(raw, "inst-1") == {
        "name": "s",
        "callback-url": URL,
        "min-notify-interval": 0,
        "metadata": {},
    }


def test_create_body_passes_optional_and_unknown_fields_to_the_core() -> None:
    raw = body(
        name="s",
        metadata={"owner": "so"},
        secret="whsec_x",
        unknown=1,
        **{"callback-url": URL, "min-notify-interval": 30, "ignore-fields": ["status.phase"]},
    )
    assert subscription_from_body(raw, "inst-1") == {
        "name": "s",
        "callback-url": URL,
        "min-notify-interval": 30,
        "metadata": {"owner": "so"},
        "secret": "whsec_x",
        "unknown": 1,
        "ignore-fields": ["status.phase"],
    }


def test_body_instance_equal_to_the_path_is_accepted_and_dropped() -> None:
    raw = body(name="s", **{"callback-url": URL, "instance-id": "inst-1"})
    result = subscription_from_body(raw, "inst-1")
    assert isinstance(result, dict)
    assert "instance-id" not in result


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "sub-1"),
        ({"name": None}, "sub-1"),
        ({"name": "sub-1"}, "sub-1"),
        ({"name": "other"}, None),
        ({"name": ""}, None),
    ],
)
def test_update_takes_its_name_from_the_path(fields: dict[str, Any], expected: str | None) -> None:
    result = subscription_from_body(body(**fields, **{"callback-url": URL}), "inst-1", "sub-1")
    if expected is None:
        assert isinstance(result, ApiError)
        assert (result.status, result.code) == (400, "invalid-name")
    else:
        assert isinstance(result, dict)
        assert result["name"] == expected


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("not-found", 404),
        ("already-exists", 409),
        ("invalid-url", 400),
        ("forbidden-network", 400),
        ("invalid-secret", 400),
        ("name-too-long", 400),
        ("anything-new", 400),
    ],
)
def test_rejection_codes_map_to_http_statuses(code: str, status: int) -> None:
    assert status_of_rejection(code) == status


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


def test_checked_in_openapi_is_what_the_models_generate() -> None:
    assert OPENAPI_FILE.read_text() == rendered_openapi(), (
        "schemas/openapi.json is stale: run python -m services.notifier.rest_api"
    )


def test_openapi_documents_the_seed_departures() -> None:
    document = json.loads(OPENAPI_FILE.read_text())
    one = document["paths"]["/v1/instance/{instID}/status/subscription/{subID}"]
    many = document["paths"]["/v1/instance/{instID}/status/subscription"]
    assert set(many) == {"parameters", "get", "post"}
    assert set(one) == {"parameters", "get", "put", "delete"}
    assert "409" in many["post"]["responses"]
    assert "404" in one["get"]["responses"]
    assert "500" in many["post"]["responses"]["409"]["description"]
    assert "secret" not in document["components"]["schemas"]["StatusSubscription"]["properties"]
