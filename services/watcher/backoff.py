"""Capped exponential backoff with jitter, for every reconnect of the watcher.

After a kube-apiserver restart every watcher in the fleet reconnects at once; jitter spreads
them out so the new server is not hit by a synchronised wave, and the cap keeps a long outage
from turning into hour-long waits once it is over. Half of each delay is fixed ("equal
jitter") so a failing server is never hammered in a tight loop. A success resets the delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``uniform(c/2, c)`` with ``c = min(cap, base * 2**n)`` for the n-th failure."""

    base_s: float = 0.2
    cap_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.failures, 32)))
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0
