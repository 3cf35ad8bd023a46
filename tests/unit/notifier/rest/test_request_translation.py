"""The REST facade's pure translation: seed-compatible body checks and the status mapping
(:mod:`services.notifier.rest.translation`), without a server or a broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.notifier.rest.errors import ApiError
from services.notifier.rest.translation import status_of_rejection, subscription_from_body

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
