"""Rotating ``DELTAWATCH_SECRET_KEY`` without dead-lettering a single signed subscription.

The operator's procedure (README, notifier settings): put the new key first and keep the old
one after it, restart; once every replica runs so, drop the old key and restart again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken

from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink, Request
from tests.notifier.conftest import Commands, Deltas, NotifierProcess, pod, read_topic

pytestmark = pytest.mark.kafka

KEY = os.urandom(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def signed_with_secret(request: Request) -> bool:
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode()
    expected = base64.b64encode(hmac.new(KEY, signed + request.body, hashlib.sha256).digest())
    return request.headers.get("webhook-signature") == "v1," + expected.decode()


def opens_with(key: str, token: object) -> bool:
    try:
        Fernet(key.encode()).decrypt(str(token).encode())
    except InvalidToken:
        return False
    return True


def test_rotation_keeps_signing_and_reseals_with_the_newest_key(
    notifier: NotifierProcess,
    notifier_env: dict[str, str],
    commands: Commands,
    deltas: Deltas,
    sink: CallbackSink,
    settings: CommonSettings,
) -> None:
    old, new = notifier_env["DELTAWATCH_SECRET_KEY"], Fernet.generate_key().decode()
    outbox = settings.changelog_topic("notifier", "outbox")
    notifier.start()
    commands.create("inst-1", "sub-1", sink.url(), 0, secret=SECRET)
    deltas.send("inst-1", created=[pod("a")])
    assert signed_with_secret(sink.wait_count(1)[0])
    assert notifier.stop() == 0

    # Step 1: the new key first, the old one still accepted for opening.
    notifier.start(DELTAWATCH_SECRET_KEY=f"{new},{old}")
    deltas.send("inst-1", modified=[pod("a", "Pending")])
    assert signed_with_secret(sink.wait_count(2)[1])

    def sealed(latest: dict[str, Any]) -> object:
        return (latest.get("inst-1/sub-1") or {}).get("sealed-secret")

    records = read_topic(settings, outbox, until=lambda latest: opens_with(new, sealed(latest)))
    assert not opens_with(old, sealed(records))
    assert notifier.stop() == 0

    # Step 2: the old key dropped; the secret stored under it was re-sealed, so nothing breaks.
    notifier.start(DELTAWATCH_SECRET_KEY=new)
    deltas.send("inst-1", modified=[pod("a", "Failed")])
    third = sink.wait_count(3)[2]
    assert third.payload["resource-changes"]["modified"] == [pod("a", "Failed")]
    assert signed_with_secret(third)
    assert read_topic(settings, settings.dlq_topic) == {}
