"""Encryption of subscription secrets at rest (CONTRACT §4: "never the secret in clear").

The notifier must sign callbacks after a restart, so it has to keep each subscription's
signing secret somewhere durable, and Kafka is the only store. The secret therefore goes to
the notifier's internal outbox changelog (never to the public subscriptions topic that the
CLI, the watcher and users read) as a Fernet token (AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package) under the key in ``DELTAWATCH_SECRET_KEY``. Without that key a
command carrying a secret is rejected (``invalid-secret``) rather than stored weakly.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class SecretBoxError(ValueError):
    """A token that this key cannot open (another key, or corrupted)."""


class SecretBox:
    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "must be a Fernet key (url-safe base64 of 32 bytes, "
                "e.g. from `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from exc

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretBoxError("secret token does not open with DELTAWATCH_SECRET_KEY") from None
