"""Liveness and readiness of a worker, as CONTRACT §1 defines them.

Liveness is a heartbeat from the worker's main loop: if the loop stops turning (deadlock, stuck
call), ``/healthz`` turns 503 after ``stall_after_s``. Readiness is a set of named conditions
(``kafka``, ``restored``, ``caught-up`` …) that each must be met; ``/readyz`` lists the ones
still missing so an operator sees *why* a worker is not ready. A worker may add facts of its own
to the ``/readyz`` body (:meth:`HealthState.describe`, e.g. the watcher's ``role``).
"""

from __future__ import annotations

import threading
import time


class HealthState:
    def __init__(self, conditions: list[str], stall_after_s: float = 60.0) -> None:
        self._lock = threading.Lock()
        self._pending = set(conditions)
        self._beat = time.monotonic()
        self._stall_after_s = stall_after_s
        self._stopping = False
        self._details: dict[str, str] = {}

    def beat(self) -> None:
        self._beat = time.monotonic()

    def met(self, condition: str) -> None:
        with self._lock:
            self._pending.discard(condition)

    def unmet(self, condition: str) -> None:
        with self._lock:
            self._pending.add(condition)

    def describe(self, name: str, value: str) -> None:
        with self._lock:
            self._details[name] = value

    @property
    def details(self) -> dict[str, str]:
        with self._lock:
            return dict(self._details)

    def stopping(self) -> None:
        self._stopping = True

    @property
    def alive(self) -> bool:
        return not self._stopping and time.monotonic() - self._beat < self._stall_after_s

    @property
    def pending(self) -> list[str]:
        with self._lock:
            return sorted(self._pending)

    @property
    def ready(self) -> bool:
        return self.alive and not self.pending
