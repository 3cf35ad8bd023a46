"""End to end: per-subscription filters and include-patch, against the real API server.

Each filtered subscriber sits beside an unfiltered one ("all") on the same instance: the
unfiltered one proves a change happened and was processed; a later change the filtered one
does want (the marker) then proves, by per-subscription order, that anything it should not
have been told would already have arrived. No sleeps: every wait is on a callback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from deltawatch.command_client import send_command
from deltawatch_tools.callback_sink import CallbackSink, Request
from deltawatch_tools.demo.story import InstanceStory
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer
from services.notifier.cps.merge_patch import apply_merge_patch
from tests.e2e.conftest import Pipeline, running_pipeline
from tests.fixtures.kube import fresh_namespace

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.kube]

INSTANCE = "e2e-filters"


@pytest.fixture
def other_namespace(kube_api: ApiClient) -> Iterator[str]:
    with fresh_namespace(kube_api, "filters-other") as name:
        yield name


@pytest.fixture
def two_namespaces(
    topic_env: dict[str, str],
    kube_server: LocalKubeServer,
    kube_namespace: str,
    other_namespace: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    namespaces = [kube_namespace, other_namespace]
    with running_pipeline(topic_env, kube_server, namespaces, tmp_path) as started:
        yield started


def _subscribe(pipeline: Pipeline, name: str, url: str, **fields: Any) -> None:
    subscription = {"name": name, "callback-url": url, "min-notify-interval": 0, **fields}
    command = {"action": "create", "instance-id": INSTANCE, "subscription": subscription}
    result = send_command(pipeline.settings, command)
    assert result["status"] == "accepted", result


def _entries(requests: list[Request], change: str | None = None) -> list[dict[str, Any]]:
    changes = ("created", "deleted", "modified") if change is None else (change,)
    return [
        entry
        for request in requests
        for kind in changes
        for entry in request.payload["resource-changes"][kind]
    ]


def _told(sink: CallbackSink, path: str, change: str, kind: str, name: str) -> None:
    sink.wait_for(
        lambda _: any(
            e["GVK"]["Kind"] == kind and e["name"] == name
            for e in _entries(sink.requests_to(path), change)
        ),
        timeout_s=60,
    )


def test_change_types_kinds_and_namespaces_filter_what_is_told(
    two_namespaces: Pipeline,
    kube_api: ApiClient,
    callback_sink: CallbackSink,
    kube_namespace: str,
    other_namespace: str,
) -> None:
    pipeline = two_namespaces
    first, second = kube_namespace, other_namespace
    web = InstanceStory(kube_api, first, INSTANCE)
    api = InstanceStory(kube_api, second, INSTANCE, app="api")
    web.seed(replicas=1)
    api.seed(replicas=1)
    sink = callback_sink
    _subscribe(pipeline, "all", sink.url("/all"))
    _subscribe(pipeline, "types", sink.url("/types"), **{"change-types": ["created", "deleted"]})
    _subscribe(
        pipeline, "kinds", sink.url("/kinds"), kinds=[{"version": "v1", "kind": "ConfigMap"}]
    )
    _subscribe(pipeline, "ns", sink.url("/ns"), namespaces=[second])

    web.change_config()  # a modification in the first namespace
    _told(sink, "/all", "modified", "ConfigMap", "web-config")
    pod = web.scale_up()  # a Pod created in the first namespace
    _told(sink, "/all", "created", "Pod", pod)
    _told(sink, "/types", "created", "Pod", pod)
    api.change_config()  # the marker for the kinds and namespaces subscribers
    _told(sink, "/kinds", "modified", "ConfigMap", "api-config")
    _told(sink, "/ns", "modified", "ConfigMap", "api-config")

    assert _entries(sink.requests_to("/types"), "modified") == []
    kinds = _entries(sink.requests_to("/kinds"))
    assert {e["GVK"]["Kind"] for e in kinds} == {"ConfigMap"}
    assert any(e["name"] == "web-config" for e in kinds)  # both namespaces, one kind
    assert {e["namespace"] for e in _entries(sink.requests_to("/ns"))} == {second}
    for path in ("/types", "/kinds", "/ns"):
        for request in sink.requests_to(path):
            assert _entries([request]), f"an empty callback to {path}"


def test_include_patch_tells_the_net_patch_across_a_throttle_window(
    pipeline: Pipeline, kube_api: ApiClient, callback_sink: CallbackSink
) -> None:
    story = InstanceStory(kube_api, pipeline.namespace, INSTANCE)
    story.seed(replicas=1)
    _subscribe(
        pipeline,
        "patch",
        callback_sink.url(),
        **{"min-notify-interval": 3, "include-patch": True},
    )
    story.change_config()  # the first modification goes out at once: the window opens
    callback_sink.wait_for(
        lambda r: any(e["status"].get("data", {}).get("LOG_LEVEL") == "debug" for e in _entries(r)),
        timeout_s=60,
    )
    config = story.objects["ConfigMap/web-config"]
    for value in range(6):  # inside the window: coalesced into one net patch
        config = ops.patch(kube_api, config, {"data": {"COUNTER": str(value)}})

    def last_value_told(received: list[Request]) -> bool:
        return any(e["status"].get("data", {}).get("COUNTER") == "5" for e in _entries(received))

    callback_sink.wait_for(last_value_told, timeout_s=60)
    told = [
        e
        for e in _entries(callback_sink.requests)
        if e["GVK"]["Kind"] == "ConfigMap" and e["name"] == "web-config"
    ]
    modified = [e for e in told if "patch" in e]
    assert len(modified) < 7  # seven modifications, fewer callbacks
    # A reader applying the patches in order to what it was told holds the current object.
    reader: Any = None
    for entry in told:
        reader = (
            entry["status"]
            if "patch" not in entry
            else apply_merge_patch(reader if reader is not None else {}, entry["patch"])
        )
        assert reader == entry["status"]
    last = modified[-1]["patch"]
    assert last["data"]["COUNTER"] == "5"
    assert "apiVersion" not in last  # relative to what was told, not the whole object
