"""Bounded polling for the compose tier: conditions across containers are awaited, not slept on."""

from __future__ import annotations

import time
from collections.abc import Callable

STACK_SETUP_TIMEOUT_S = 1500  # a cold machine builds Compose, the stand-ins and the images


def await_condition(
    what: str, check: Callable[[], object], timeout_s: float, interval_s: float = 0.25
) -> None:
    """Poll ``check()`` until truthy (exceptions count as not yet), or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not there yet: the next poll decides
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")
