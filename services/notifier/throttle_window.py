"""When a target may be told again: the min-notify-interval rule of CONTRACT §6.

"Two callbacks are never less than I seconds apart": every POST to a target (a retry too)
starts the window again. The first change after a quiet period goes out at once (the
leading edge), changes inside the window wait for its end. Interval 0 never waits.

Pure: times are plain seconds passed in by the caller (monotonic or wall clock, the caller
chooses, as long as it is consistent).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ThrottleWindow:
    interval_s: float
    last_sent_at: float | None = None

    def opens_at(self, now: float) -> float:
        """The earliest time, not before ``now``, at which a send is allowed."""
        if self.last_sent_at is None or self.interval_s <= 0:
            return now
        return max(now, self.last_sent_at + self.interval_s)

    def allows(self, now: float) -> bool:
        return self.opens_at(now) <= now

    def sent(self, at: float) -> None:
        if self.last_sent_at is None or at > self.last_sent_at:
            self.last_sent_at = at
