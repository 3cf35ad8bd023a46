"""Encryption of subscription secrets at rest (CONTRACT §4: "never the secret in clear").

The notifier must sign callbacks after a restart, so it has to keep each subscription's
signing secret somewhere durable, and Kafka is the only store. The secret therefore goes to
the notifier's internal outbox changelog (never to the public subscriptions topic that the
CLI, the watcher and users read) as a Fernet token (AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package) under the key in ``DELTAWATCH_SECRET_KEY``. Without that key a
command carrying a secret is rejected (``invalid-secret``) rather than stored weakly.

Rotation: ``DELTAWATCH_SECRET_KEY`` may list several keys, comma-separated, newest first
(``cryptography``'s ``MultiFernet``). Tokens sealed with any of them open; new ones are sealed
with the first; and a token found sealed with an older key is sealed again with the newest
(:meth:`SecretBox.reseal`), so once every replica has run with the new list the old key can be
dropped from it without a single subscription losing its secret.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBoxError(ValueError):
    """A token that this key cannot open (another key, or corrupted)."""


class SecretBox:
    def __init__(self, keys: str) -> None:
        """``keys``: one Fernet key, or several comma-separated, newest first."""
        try:
            fernets = [Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()]
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "must be Fernet keys, comma-separated, newest first (each url-safe base64 of "
                "32 bytes, e.g. from `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from exc
        if not fernets:
            raise ValueError("must name at least one Fernet key")
        self._newest = fernets[0]
        self._all = MultiFernet(fernets)

    def seal(self, secret: str) -> str:
        return self._newest.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._all.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretBoxError("secret token does not open with DELTAWATCH_SECRET_KEY") from None

    def reseal(self, token: str) -> str | None:
        """The token sealed with the newest key; ``None`` when it already is (or cannot open)."""
        try:
            self._newest.decrypt(token.encode())
            return None
        except InvalidToken:
            pass
        try:
            return self._all.rotate(token.encode()).decode()
        except InvalidToken:
            return None
