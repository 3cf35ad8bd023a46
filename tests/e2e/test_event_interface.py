"""Every record a pipeline run writes fits ``schemas/asyncapi.yaml`` (issue 22).

The three workers run as processes against the real broker and API server (the ``pipeline``
fixture); the test does what users do — commands, a CPS subscription, changes in the cluster,
a subscriber that refuses its callbacks — until every contract topic holds records of every
kind the document describes. Then it reads each topic from the start and asks the document
which message each record is (:class:`tests.asyncapi.event_interface.EventInterface`: key,
headers, payload). A record that fits no message, or a message no record exercised, fails.
The CPS topic's ``cps`` format is not enabled in this run; the CPS event writer's test matches
its records against the document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Message
from kubernetes.client import ApiClient

from deltawatch.command_client import send_command
from deltawatch.settings import CommonSettings
from deltawatch.topics import contract_topics
from deltawatch_tools.callback_sink import CallbackSink, Reply
from deltawatch_tools.localkube import ops
from tests.asyncapi.event_interface import EventInterface
from tests.e2e.conftest import Pipeline
from tests.fixtures.kafka import committed_records

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.kube]

LABEL = "k8splugin.io/rb-instance-id"
INSTANCE, DATASPACE = "e2e-iface", "ds-iface"
NOT_IN_THIS_RUN = {("cps", "cpsDataUpdatedEvent")}  # DELTAWATCH_CPS_EVENT_FORMAT=cps only


def _labelled(kind: str, namespace: str, name: str, **body: Any) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace, "labels": {LABEL: INSTANCE}}
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata, **body}


def _command(settings: CommonSettings, command: dict[str, Any], status: str) -> None:
    result = send_command(settings, command)
    assert result["status"] == status, result


def _await_records(
    settings: CommonSettings, topic: str, what: str, fits: Callable[..., bool]
) -> None:
    ops.wait_until(
        lambda: any(fits(m) for m in committed_records(settings, topic)),
        timeout=90,
        interval=0.5,
        what=what,
    )


def _of_type(suffix: bytes) -> Callable[[Message], bool]:
    return lambda m: dict(m.headers() or []).get("ce_type", b"").endswith(suffix)


def _play(pipeline: Pipeline, kube_api: ApiClient, callback_url: str) -> None:
    settings, namespace = pipeline.settings, pipeline.namespace
    # A labelled Secret before a subscription that asks for Secrets: when the subscription
    # arrives, the watcher lists Secrets (list markers) and the differ reports the instance
    # synced for that list.
    ops.create(kube_api, _labelled("Secret", namespace, "token", stringData={"k": "v"}))
    subscription = {
        "name": "iface",
        "callback-url": callback_url,
        "min-notify-interval": 0,
        "extra-resource-types": [{"group": "", "version": "v1", "kind": "Secret"}],
    }
    create = {"action": "create", "instance-id": INSTANCE, "subscription": subscription}
    _command(settings, create, "accepted")
    cps = {"action": "subscribe-delta-notification", "dataspace": DATASPACE, "anchors": [INSTANCE]}
    _command(settings, cps, "accepted")
    missing = {"action": "delete", "instance-id": INSTANCE, "subscription-name": "nobody"}
    _command(settings, missing, "rejected")
    ops.create(kube_api, _labelled("ConfigMap", namespace, "conf", data={"mode": "blue"}))
    _await_records(settings, settings.dlq_topic, "a dead letter", lambda m: True)
    _await_records(settings, settings.cps_topic, "a CPS event", lambda m: True)
    _await_records(settings, settings.deltas_topic, "a synced event", _of_type(b".synced"))
    _await_records(settings, settings.deltas_topic, "a heartbeat", _of_type(b".heartbeat"))
    delete = {"action": "delete", "instance-id": INSTANCE, "subscription-name": "iface"}
    _command(settings, delete, "accepted")
    _await_records(
        settings, settings.subscriptions_topic, "the tombstone", lambda m: m.value() is None
    )


def test_every_record_of_a_pipeline_run_fits_the_asyncapi_document(
    pipeline: Pipeline, kube_api: ApiClient, callback_sink: CallbackSink
) -> None:
    callback_sink.answer_by_default(Reply(410))  # refused, not retried: dead-lettered at once
    _play(pipeline, kube_api, callback_sink.url("/notify/iface"))

    interface = EventInterface()
    seen: set[tuple[str, str]] = set()
    for role, spec in contract_topics(pipeline.settings).items():
        for message in committed_records(pipeline.settings, spec.name):
            name = interface.identify(role, message.key(), message.headers(), message.value())
            seen.add((role, name))
    described = {(role, name) for role in interface.channels for name in interface.messages(role)}
    assert seen == described - NOT_IN_THIS_RUN
