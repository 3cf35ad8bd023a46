"""Pure delivery rules: Standard Webhooks signing, retry verdicts, network fence, secret box."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from services.notifier.delivery.callback_networks import refusal
from services.notifier.delivery.retry_policy import backoff_s, judge, retry_after_s
from services.notifier.delivery.secret_box import SecretBox, SecretBoxError
from services.notifier.delivery.webhook_signing import (
    InvalidSecretError,
    secret_key,
    verify,
    webhook_headers,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_signature_matches_an_independent_hmac() -> None:
    body = b'{"instance-id":"i"}'
    headers = webhook_headers("msg_1", 1700000000, body, secret_key(SECRET))
    expected = base64.b64encode(
        hmac.new(KEY, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == "1700000000"
    assert verify(KEY, "msg_1", 1700000000, body, f"v1,bogus v1,{expected}")
    assert not verify(KEY, "msg_1", 1700000001, body, f"v1,{expected}")


def test_unsigned_when_no_secret() -> None:
    assert "webhook-signature" not in webhook_headers("m", 1, b"{}", None)


@pytest.mark.parametrize(
    "secret",
    [
        "abc",
        "whsec_!!!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidSecretError):
        secret_key(secret)


@pytest.mark.parametrize(
    ("status", "attempts", "outcome"),
    [
        (200, 1, "delivered"),
        (204, 1, "delivered"),
        (503, 1, "retry"),
        (500, 1, "retry"),
        (429, 1, "retry"),
        (408, 1, "retry"),
        (0, 1, "retry"),
        (400, 1, "dead"),
        (404, 1, "dead"),
        (301, 1, "dead"),
        (503, 8, "dead"),
    ],
)
def test_verdicts(status: int, attempts: int, outcome: str) -> None:
    verdict = judge(
        status=status,
        error=None,
        attempts=attempts,
        first_attempt_at=0,
        now=1,
        retry_after=None,
        interval_s=0,
        max_attempts=8,
        max_age_s=3600,
        jitter=0.5,
    )
    assert verdict.outcome == outcome


def test_retry_waits_for_retry_after_and_interval() -> None:
    common = dict(
        status=503,
        error=None,
        attempts=1,
        first_attempt_at=0,
        now=0,
        max_attempts=8,
        max_age_s=3600,
        jitter=0.0,
    )
    assert judge(retry_after=7, interval_s=0, **common).delay_s == 7  # type: ignore[arg-type]
    assert judge(retry_after=None, interval_s=30, **common).delay_s == 30  # type: ignore[arg-type]
    assert judge(retry_after=None, interval_s=0, **common).delay_s == 0.5  # type: ignore[arg-type]


def test_max_age_ends_retries() -> None:
    verdict = judge(
        status=503,
        error=None,
        attempts=1,
        first_attempt_at=0,
        now=99,
        retry_after=10,
        interval_s=0,
        max_attempts=8,
        max_age_s=100,
        jitter=0,
    )
    assert verdict.outcome == "dead"


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    assert [backoff_s(n, 0.999999) for n in (1, 2, 3)] == pytest.approx([1, 2, 4], rel=1e-5)
    assert backoff_s(1, 0.0) == 0.5
    assert backoff_s(40, 0.999999) == pytest.approx(300, rel=1e-5)


def test_retry_after_as_seconds_or_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_s("3", now) == 3
    assert retry_after_s("Thu, 01 Jan 2026 00:00:10 GMT", now) == 10
    assert retry_after_s("soon", now) is None


def test_network_refusal_checks_every_address() -> None:
    deny = [ipaddress.ip_network("169.254.0.0/16")]
    addresses = [ipaddress.ip_address("10.1.1.1"), ipaddress.ip_address("169.254.169.254")]
    assert (
        refusal(addresses, [], deny)
        == "address 169.254.169.254 is in denied network 169.254.0.0/16"
    )
    assert refusal(addresses[:1], [], deny) is None


def test_secret_box_round_trip_and_wrong_key() -> None:
    box = SecretBox(Fernet.generate_key().decode())
    token = box.seal(SECRET)
    assert SECRET not in token
    assert box.open(token) == SECRET
    with pytest.raises(SecretBoxError):
        SecretBox(Fernet.generate_key().decode()).open(token)
    with pytest.raises(ValueError, match="Fernet key"):
        SecretBox("short")


def test_webhook_id_is_deterministic_per_subscription_incarnation_and_number() -> None:
    from services.notifier.notification import webhook_id

    assert webhook_id("i/s", 1000, 1) == webhook_id("i/s", 1000, 1)
    assert webhook_id("i/s", 1000, 1).startswith("msg_")
    assert (
        len(
            {
                webhook_id("i/s", 1000, 1),
                webhook_id("i/s", 1000, 2),
                webhook_id("i/s", 2000, 1),
                webhook_id("i/t", 1000, 1),
            }
        )
        == 4
    )


def test_secret_box_rotation_opens_old_tokens_seals_with_the_newest_and_reseals() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox(old).seal(SECRET)
    rotating = SecretBox(f"{new}, {old}")
    assert rotating.open(token) == SECRET
    assert SecretBox(new).open(rotating.seal(SECRET)) == SECRET
    resealed = rotating.reseal(token)
    assert resealed is not None
    assert SecretBox(new).open(resealed) == SECRET
    assert rotating.reseal(resealed) is None  # already under the newest key: no rewrite
    assert rotating.reseal(SecretBox(Fernet.generate_key().decode()).seal(SECRET)) is None
    with pytest.raises(ValueError, match="Fernet keys"):
        SecretBox(f"{new},short")


def test_secret_key_setting_names_the_bad_key_of_a_rotation_list() -> None:
    from deltawatch.settings import NotifierSettings

    good = Fernet.generate_key().decode()
    assert NotifierSettings(DELTAWATCH_SECRET_KEY=f"{good},{good}").secret_key is not None
    with pytest.raises(ValueError, match="key 2 of 2 is not a Fernet key"):
        NotifierSettings(DELTAWATCH_SECRET_KEY=f"{good},nope")
