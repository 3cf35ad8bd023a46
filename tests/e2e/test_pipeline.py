"""End to end: a change in the cluster reaches the subscriber through all three workers."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from kubernetes.client import ApiClient

from deltawatch.command_client import send_command
from deltawatch.resource_identity import ResourceKey
from deltawatch_tools.callback_sink import CallbackSink, Request
from deltawatch_tools.demo.story import InstanceStory
from deltawatch_tools.localkube import ops
from services.notifier.cps.xpath import resource_xpath
from tests.e2e.conftest import Pipeline
from tests.notifier.cps.conftest import CpsRecord, of_anchor, wait_cps

CLI = [sys.executable, "-c", "from deltawatch_tools.cli import main; main()"]

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.kube]


def _subscribe(pipeline: Pipeline, instance_id: str, url: str, interval: int) -> None:
    result = send_command(
        pipeline.settings,
        {
            "action": "create",
            "instance-id": instance_id,
            "subscription": {
                "name": "e2e",
                "callback-url": url,
                "min-notify-interval": interval,
                "metadata": {"owner": "e2e"},
            },
        },
    )
    assert result["status"] == "accepted", result


def _told(received: list[Request], kind: str, name: str, change: str) -> bool:
    return any(
        entry["name"] == name and entry["GVK"]["Kind"] == kind
        for callback in received
        for entry in callback.payload["resource-changes"][change]
    )


def test_a_cluster_change_reaches_the_subscriber_with_the_seed_payload(
    pipeline: Pipeline, kube_api: ApiClient, callback_sink: CallbackSink
) -> None:
    story = InstanceStory(kube_api, pipeline.namespace, "e2e-inst")
    story.seed(replicas=1)
    _subscribe(pipeline, "e2e-inst", callback_sink.url(), interval=0)

    story.change_config()
    callback_sink.wait_for(lambda r: _told(r, "ConfigMap", "web-config", "modified"), timeout_s=60)
    first = callback_sink.requests[0]
    payload = first.payload
    assert set(payload) == {"instance-id", "subscription-name", "metadata", "resource-changes"}
    assert payload["instance-id"] == "e2e-inst"
    assert payload["subscription-name"] == "e2e"
    assert payload["metadata"] == {"owner": "e2e"}
    assert set(payload["resource-changes"]) == {"created", "deleted", "modified"}
    # The baseline: objects that existed at subscription time are not reported as created.
    assert payload["resource-changes"]["created"] == []
    entry = payload["resource-changes"]["modified"][0]
    assert entry["GVK"] == {"Group": "", "Version": "v1", "Kind": "ConfigMap"}
    assert entry["namespace"] == pipeline.namespace
    assert entry["status"]["data"]["LOG_LEVEL"] == "debug"
    assert "managedFields" not in entry["status"]["metadata"]
    assert first.headers["content-type"] == "application/json"
    assert first.headers["webhook-id"]

    pod = story.scale_up()
    callback_sink.wait_for(lambda r: _told(r, "Pod", pod, "created"), timeout_s=60)
    story.scale_down()
    callback_sink.wait_for(lambda r: _told(r, "Pod", pod, "deleted"), timeout_s=60)


def test_throttling_holds_end_to_end(
    pipeline: Pipeline, kube_api: ApiClient, callback_sink: CallbackSink
) -> None:
    interval = 3
    story = InstanceStory(kube_api, pipeline.namespace, "e2e-throttle")
    story.seed(replicas=1)
    _subscribe(pipeline, "e2e-throttle", callback_sink.url(), interval=interval)
    config = story.objects["ConfigMap/web-config"]
    for value in range(12):
        config = ops.patch(kube_api, config, {"data": {"COUNTER": str(value)}})

    def final_value_told(received: list[Request]) -> bool:
        return any(
            e["status"]["data"].get("COUNTER") == "11"
            for c in received
            for e in c.payload["resource-changes"]["modified"]
        )

    callback_sink.wait_for(final_value_told, timeout_s=60)
    received = callback_sink.requests
    # Twelve modifications, coalesced: far fewer callbacks, never closer than the interval.
    assert len(received) < 12
    for a, b in itertools.pairwise(received):
        assert b.received_at - a.received_at >= interval - 0.05
    for callback in received:
        names = [e["name"] for e in callback.payload["resource-changes"]["modified"]]
        assert len(names) == len(set(names)), "a coalesced callback repeats an object"


def test_cli_lists_the_subscription_with_its_last_notification(
    pipeline: Pipeline, kube_api: ApiClient, callback_sink: CallbackSink
) -> None:
    story = InstanceStory(kube_api, pipeline.namespace, "e2e-cli")
    story.seed(replicas=1)
    _subscribe(pipeline, "e2e-cli", callback_sink.url(), interval=0)
    story.change_config()
    callback_sink.wait_for(lambda r: len(r) >= 1, timeout_s=60)

    def listed() -> list[dict[str, object]] | None:
        result = subprocess.run(
            [*CLI, "subscription", "list", "--instance", "e2e-cli", "--json"],
            env={**pipeline.env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        subscriptions: list[dict[str, object]] = json.loads(result.stdout)
        if subscriptions and subscriptions[0].get("last-notify-status") == 200:
            return subscriptions
        return None

    subscriptions = ops.wait_until(listed, timeout=60, interval=0.5, what="last-notify-status")
    assert subscriptions[0]["name"] == "e2e"
    assert subscriptions[0]["last-notify-time"]


def test_a_cluster_change_reaches_cps_as_a_delta_event(
    pipeline: Pipeline, kube_api: ApiClient
) -> None:
    story = InstanceStory(kube_api, pipeline.namespace, "e2e-cps")
    story.seed(replicas=1)
    result = send_command(
        pipeline.settings,
        {"action": "subscribe-delta-notification", "dataspace": "ds-e2e", "anchors": ["e2e-cps"]},
    )
    assert result["status"] == "accepted", result
    story.change_config()
    config_xpath = resource_xpath(
        ResourceKey(
            pipeline.settings.cluster, "", "v1", "ConfigMap", pipeline.namespace, "web-config"
        )
    )

    def config_updated(records: list[CpsRecord]) -> bool:
        return any(
            change["action"] == "UPDATE" and change["xpath"] == config_xpath
            for record in of_anchor(records, "e2e-cps")
            for change in record.data["data"]
        )

    records = of_anchor(wait_cps(pipeline.settings, config_updated, timeout_s=60), "e2e-cps")
    event = records[0]
    assert event.key == "ds-e2e:e2e-cps"
    assert event.headers["ce_type"] == "org.onap.cps.data-updated-delta-event"
    assert event.data["anchorName"] == "e2e-cps"
    assert event.data["dataspaceName"] == "ds-e2e"
    [change] = event.data["data"]
    assert change["action"] == "UPDATE"
    assert change["xpath"] == config_xpath
    assert change["payload"]["data"]["LOG_LEVEL"] == "debug"
