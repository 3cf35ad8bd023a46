"""One-shot of the compose stack: the notifier's ``DELTAWATCH_SECRET_KEY``, so that signed
subscriptions work by default.

The notifier seals each subscription's signing secret with this Fernet key; without one it
rejects every command carrying a ``secret`` (``invalid-secret``). The key must also outlive a
restart, since the sealed secrets in Kafka only open with the key that sealed them. So this
runs before the notifier, in its image, and keeps the key in a file of the stack's volume
(``SECRET_KEY_FILE``), which the notifier reads at start:

* ``DELTAWATCH_SECRET_KEY`` given (exported, or in ``compose/.env``): that key is written.
* otherwise the key already in the file is kept;
* otherwise a new key is generated, once, and written.

The key is never printed. ``docker compose down -v`` removes it together with the Kafka data it
protects.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.fernet import Fernet

DEFAULT_FILE = "/var/lib/deltawatch/secret-key"


def _is_fernet_key(text: str) -> bool:
    try:
        Fernet(text.encode())
    except (ValueError, TypeError):
        return False
    return True


def _write(path: Path, key: str) -> None:
    """Written whole or not at all, readable by its owner (the image's user) only."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(key + "\n")
    partial.chmod(0o600)
    partial.replace(path)


def ensure_key(path: Path, given: str) -> str:
    """Make ``path`` hold the key to use; return what was done (for the one log line)."""
    if given:
        if not _is_fernet_key(given):
            raise ValueError(
                "DELTAWATCH_SECRET_KEY is not a Fernet key (url-safe base64 of 32 bytes)"
            )
        if path.is_file() and path.read_text().strip() == given:
            return "kept the DELTAWATCH_SECRET_KEY given"
        _write(path, given)
        return "wrote the DELTAWATCH_SECRET_KEY given"
    if path.is_file() and _is_fernet_key(path.read_text().strip()):
        return "kept the key generated earlier"
    _write(path, Fernet.generate_key().decode())
    return "generated a new key"


def main() -> int:
    path = Path(os.environ.get("SECRET_KEY_FILE", DEFAULT_FILE))
    try:
        done = ensure_key(path, os.environ.get("DELTAWATCH_SECRET_KEY", "").strip())
    except (ValueError, OSError) as exc:
        print(f"secret-key: {exc}", file=sys.stderr)
        return 2
    print(f"secret-key: {done} ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
