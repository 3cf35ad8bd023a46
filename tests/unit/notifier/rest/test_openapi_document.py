"""The checked-in OpenAPI document: what the models generate, and it documents the seed
departures (404/409 where the seed said 500, never the secret)."""

from __future__ import annotations

import json

from services.notifier.rest.openapi import OPENAPI_FILE, rendered_openapi


def test_checked_in_openapi_is_what_the_models_generate() -> None:
    assert OPENAPI_FILE.read_text() == rendered_openapi(), (
        "schemas/openapi.json is stale: run python -m services.notifier.rest.openapi"
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
