"""SIGTERM / SIGINT turn into a flag the worker loops check between batches.

A worker must finish or abort its in-flight batch, commit, and exit 0 within 10 s (CONTRACT
§1), so signals never interrupt a batch: they only ask the loop to stop at the next boundary.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class ShutdownFlag:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> ShutdownFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def request(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)
