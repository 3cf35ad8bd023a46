"""The REST facade of a real notifier process (CONTRACT §9): every route, every validation
path, and REST and Kafka clients seeing each other's writes."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import httpx
import pytest

from deltawatch.command_client import send_command
from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink
from tests.notifier.conftest import Deltas, NotifierProcess, pod, read_topic
from tests.notifier.rest.conftest import sample_body, subscriptions_path

pytestmark = pytest.mark.kafka

SEED_FIELDS = {
    "name",
    "min-notify-interval",
    "last-update-time",
    "callback-url",
    "last-notify-time",
    "last-notify-status",
    "metadata",
}


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"code", "message"}
    return error


def test_subscription_lifecycle(api: httpx.Client, instance: str) -> None:
    path = subscriptions_path(instance)
    assert api.get(path).json() == []

    created = api.post(path, json=sample_body("sub-1"))
    assert created.status_code == 201, created.text
    shown = created.json()
    assert set(shown) >= SEED_FIELDS | {"instance-id"}
    assert shown["name"] == "sub-1"
    assert shown["instance-id"] == instance
    assert shown["min-notify-interval"] == 30
    assert shown["metadata"] == {"owner": "so"}
    assert shown["last-notify-status"] == 0

    listed = api.get(path)
    assert listed.status_code == 200
    assert listed.json() == [shown]
    one = api.get(f"{path}/sub-1")
    assert one.status_code == 200
    assert one.json() == shown

    updated = api.put(
        f"{path}/sub-1",
        json={"min-notify-interval": 5, "callback-url": "http://127.0.0.1:9/other"},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["min-notify-interval"] == 5
    assert updated.json()["callback-url"] == "http://127.0.0.1:9/other"
    assert updated.json()["metadata"] == {}  # the seed's update replaces metadata too
    assert api.get(f"{path}/sub-1").json() == updated.json()

    deleted = api.delete(f"{path}/sub-1")
    assert deleted.status_code == 202
    assert deleted.content == b""
    assert api.get(f"{path}/sub-1").status_code == 404
    assert api.get(path).json() == []


def test_not_found_and_already_exists(api: httpx.Client, instance: str) -> None:
    path = subscriptions_path(instance)
    assert api.post(path, json=sample_body("dup")).status_code == 201
    again = api.post(path, json=sample_body("dup"))
    assert again.status_code == 409
    assert error_of(again)["code"] == "already-exists"
    assert error_of(again)["command-id"]

    for response in (
        api.get(f"{path}/missing"),
        api.put(f"{path}/missing", json=sample_body("missing")),
        api.delete(f"{path}/missing"),
    ):
        assert response.status_code == 404, response.text
        assert error_of(response)["code"] == "not-found"


BAD_BODIES = [
    pytest.param(b"", 400, "empty-body", id="empty-body"),
    pytest.param(b'{"name": "x",', 422, "malformed-json", id="bad-json"),
    pytest.param(b"[]", 422, "malformed-json", id="not-an-object"),
    pytest.param(
        json.dumps(sample_body(**{"min-notify-interval": "ten"})).encode(),
        422,
        "invalid-field",
        id="interval-not-a-number",
    ),
    pytest.param(
        json.dumps(sample_body(metadata=["x"])).encode(), 422, "invalid-field", id="metadata-list"
    ),
    pytest.param(
        json.dumps(sample_body(**{"min-notify-interval": -1})).encode(),
        400,
        "invalid-interval",
        id="negative-interval",
    ),
    pytest.param(
        json.dumps(sample_body(**{"callback-url": ""})).encode(),
        400,
        "invalid-url",
        id="empty-callback-url",
    ),
]


@pytest.mark.parametrize(("raw", "status", "code"), BAD_BODIES)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_seed_body_validation(
    api: httpx.Client, instance: str, method: str, raw: bytes, status: int, code: str
) -> None:
    path = subscriptions_path(instance)
    url = path if method == "POST" else f"{path}/sub-1"
    response = api.request(method, url, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code


def test_empty_name_is_400_and_put_name_must_match_the_path(
    api: httpx.Client, instance: str
) -> None:
    path = subscriptions_path(instance)
    response = api.post(path, json=sample_body(""))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid-name"
    response = api.put(f"{path}/sub-1", json=sample_body("sub-2"))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid-name"
    response = api.post(path, json=sample_body(**{"instance-id": "someone-else"}))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid-field"


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"callback-url": "ftp://127.0.0.1/x"}, "invalid-url"),
        ({"callback-url": "http://10.99.1.2:8080/notify"}, "forbidden-network"),
        ({"secret": "not-a-webhook-secret"}, "invalid-secret"),
        ({"name": "n" * 254}, "name-too-long"),
        ({"metadata": {"blob": "x" * 70_000}}, "metadata-too-large"),
        ({"extra-resource-types": [{"kind": "Pod"}]}, "invalid-field"),
        ({"unknown-field": 1}, "invalid-field"),
    ],
)
def test_rejections_from_the_notifier_core_are_400_with_their_code(
    api: httpx.Client, instance: str, fields: dict[str, Any], code: str
) -> None:
    response = api.post(subscriptions_path(instance), json=sample_body(**fields))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["command-id"]
    assert api.get(subscriptions_path(instance)).json() == []


def test_instance_id_in_the_path_is_validated_by_the_core(api: httpx.Client) -> None:
    response = api.post(subscriptions_path("i" * 254), json=sample_body())
    assert response.status_code == 400
    assert error_of(response)["code"] == "name-too-long"


def test_optional_fields_are_kept_and_the_secret_never_shown(
    api: httpx.Client, instance: str
) -> None:
    path = subscriptions_path(instance)
    body = sample_body(
        secret=_secret(),
        **{
            "extra-resource-types": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
            "ignore-fields": ["status.phase"],
        },
    )
    created = api.post(path, json=body)
    assert created.status_code == 201, created.text
    for shown in (created.json(), api.get(f"{path}/sub-1").json(), api.get(path).json()[0]):
        assert "secret" not in shown
        assert body["secret"] not in json.dumps(shown)
        assert shown["signed"] is True
        assert shown["ignore-fields"] == ["status.phase"]
        assert shown["extra-resource-types"] == [
            {"group": "apps", "version": "v1", "kind": "Deployment"}
        ]


def test_filters_are_kept_and_a_bad_one_is_refused_with_its_code(
    api: httpx.Client, instance: str
) -> None:
    path = subscriptions_path(instance)
    filters = {
        "change-types": ["created", "deleted"],
        "kinds": [{"group": "", "version": "v1", "kind": "Pod"}],
        "namespaces": ["prod"],
        "exclude-namespaces": ["kube-system"],
        "include-patch": True,
    }
    created = api.post(path, json=sample_body("filtered", **filters))
    assert created.status_code == 201, created.text
    shown = api.get(f"{path}/filtered").json()
    assert {name: shown[name] for name in filters} == filters
    refused = api.post(path, json=sample_body("typo", **{"change-types": ["updated"]}))
    assert refused.status_code == 400
    assert error_of(refused)["code"] == "unknown-change-type"


def test_create_via_rest_is_seen_on_the_results_and_subscriptions_topics(
    api: httpx.Client, instance: str, module_settings: CommonSettings
) -> None:
    created = api.post(subscriptions_path(instance), json=sample_body("seen"))
    assert created.status_code == 201
    key = f"{instance}/seen"
    states = read_topic(module_settings, module_settings.subscriptions_topic, lambda r: key in r)
    assert states[key] == created.json()
    results = read_topic(
        module_settings,
        module_settings.command_results_topic,
        lambda r: any(v and v.get("instance-id") == instance for v in r.values()),
    )
    [(command_id, result)] = [
        (k, v) for k, v in results.items() if v and v.get("instance-id") == instance
    ]
    assert result["command-id"] == command_id
    assert result["status"] == "accepted"
    assert result["action"] == "create"
    assert result["subscription-name"] == "seen"


def test_create_via_kafka_is_listed_by_rest(
    api: httpx.Client, instance: str, module_settings: CommonSettings
) -> None:
    command = {
        "action": "create",
        "instance-id": instance,
        "subscription": {"name": "from-kafka", "callback-url": "http://127.0.0.1:9/k"},
    }
    result = send_command(module_settings, command)
    assert result["status"] == "accepted", result
    # No polling: a read waits for the directory to reach the topic's end itself.
    listed = api.get(subscriptions_path(instance))
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()] == ["from-kafka"]


def test_reads_show_the_last_notification(
    api: httpx.Client, instance: str, module_settings: CommonSettings
) -> None:
    with CallbackSink() as sink:
        body = sample_body("told", **{"callback-url": sink.url(), "min-notify-interval": 0})
        assert api.post(subscriptions_path(instance), json=body).status_code == 201
        Deltas(module_settings).send(instance, created=[pod("web-0")])
        sink.wait_count(1)
    deadline = time.monotonic() + 20
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = api.get(f"{subscriptions_path(instance)}/told").json()
        if shown["last-notify-status"] == 200:
            break
        time.sleep(0.1)
    assert shown["last-notify-status"] == 200
    assert shown["last-notify-time"] > shown["created-at"]


def test_openapi_is_served_as_checked_in(api: httpx.Client) -> None:
    from services.notifier.rest.openapi import OPENAPI_FILE

    response = api.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(OPENAPI_FILE.read_text())


def test_metrics_count_requests(api: httpx.Client, notifier: NotifierProcess) -> None:
    api.get(subscriptions_path("metrics-probe"))
    text = notifier.metrics()
    assert (
        'deltawatch_notifier_rest_requests_total{method="GET",'
        'route="/v1/instance/{instID}/status/subscription",status="200"}'
    ) in text
    assert "deltawatch_notifier_rest_directory_subscriptions" in text
