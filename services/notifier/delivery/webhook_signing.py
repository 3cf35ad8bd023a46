"""Standard Webhooks signing: the ``webhook-*`` headers of every callback (CONTRACT §6).

Kept in one small module, as the Standard Webhooks reference libraries do, so the one place
that touches the key is easy to audit: secrets are ``whsec_`` + base64 of 24-64 bytes, the
HMAC key is the decoded bytes, the signed content is ``<id>.<timestamp>.<body>``, and the
header is ``v1,<base64 HMAC-SHA256>``. Anything else is refused when the command arrives, so
delivery never meets a secret it cannot use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class InvalidSecretError(ValueError):
    """A secret that is not ``whsec_`` + base64 of 24-64 bytes."""


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecretError("secret must start with 'whsec_'")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecretError("secret after 'whsec_' is not valid base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecretError(
            f"secret must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256("<id>.<timestamp>.<body>")>``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    webhook_id: str, timestamp: int, body: bytes, key: bytes | None
) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
    }
    if key is not None:
        headers["webhook-signature"] = signature(key, webhook_id, timestamp, body)
    return headers


def verify(key: bytes, webhook_id: str, timestamp: int, body: bytes, signature_header: str) -> bool:
    """True when any ``v1,`` signature in the (space-separated) header matches."""
    expected = signature(key, webhook_id, timestamp, body)
    return any(
        hmac.compare_digest(candidate, expected) for candidate in signature_header.split(" ")
    )
