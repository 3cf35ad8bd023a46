"""Harness for REST facade tests: real notifier subprocesses on one set of topics.

The process, command and delta helpers are the notifier tests' own
(:mod:`tests.notifier.conftest`); this adds module-scoped processes, since each test here uses
its own instance-ids and starting a notifier costs seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet

from deltawatch.settings import CommonSettings
from tests.fixtures.kafka import unique_topic_env
from tests.notifier.conftest import NotifierProcess

DENIED_NETWORK = "10.99.0.0/16"


def rest_env(bootstrap: str, tag: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        **unique_topic_env(bootstrap, tag),
        "DELTAWATCH_NOTIFIER_GROUP_ID": f"rest-{tag}-{suffix}",
        "DELTAWATCH_SECRET_KEY": Fernet.generate_key().decode(),
        "DELTAWATCH_CALLBACK_DENY_NETWORKS": DENIED_NETWORK,
        "DELTAWATCH_LOG_FORMAT": "console",
    }


@pytest.fixture(scope="module")
def module_env(kafka_bootstrap: str) -> dict[str, str]:
    return rest_env(kafka_bootstrap, "rest")


@pytest.fixture(scope="module")
def notifier(
    module_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NotifierProcess]:
    process = NotifierProcess(
        {**module_env, "DELTAWATCH_TRANSACTIONAL_ID": "rest-a-" + uuid.uuid4().hex[:8]},
        tmp_path_factory.mktemp("notifier") / "notifier.log",
    ).start()
    yield process
    if process.process is not None and process.process.poll() is None:
        assert process.stop() == 0


@pytest.fixture(scope="module")
def module_settings(module_env: dict[str, str]) -> CommonSettings:
    return CommonSettings(**module_env)


@pytest.fixture
def api(notifier: NotifierProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=notifier.base, timeout=30) as client:
        yield client


@pytest.fixture
def instance() -> str:
    """A fresh instance-id per test, so tests sharing a notifier never see each other."""
    return f"inst-{uuid.uuid4().hex[:10]}"


def subscriptions_path(instance: str) -> str:
    return f"/v1/instance/{instance}/status/subscription"


def sample_body(name: str = "sub-1", **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "min-notify-interval": 30,
        "metadata": {"owner": "so"},
        "callback-url": "http://127.0.0.1:9/notify",
        **extra,
    }
