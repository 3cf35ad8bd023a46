"""Keep exactly the desired watch targets running: start new ones, stop dropped ones.

The desired set changes while the watcher runs (a subscription adds an extra kind, the last
subscription needing it goes away); reconciling against the running set keeps that logic in
one place, idempotent, and independent of why the set changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from deltawatch.logs import get_logger
from services.watcher.kinds import WatchTarget
from services.watcher.metrics import WatcherMetrics
from services.watcher.target_watch import TargetWatch

StartWatch = Callable[[WatchTarget], TargetWatch]


class Supervisor:
    def __init__(self, start_watch: StartWatch, metrics: WatcherMetrics) -> None:
        self._start_watch = start_watch
        self._metrics = metrics
        self._running: dict[WatchTarget, TargetWatch] = {}
        self.log = get_logger("watcher.supervisor")

    @property
    def targets(self) -> frozenset[WatchTarget]:
        return frozenset(self._running)

    def reconcile(self, desired: Iterable[WatchTarget]) -> None:
        wanted = set(desired)
        gone = [t for t in self._running if t not in wanted]
        for target in gone:
            self.log.info("stopping watch", target=str(target))
            self._running[target].request_stop()
        for target in gone:
            self._running.pop(target).join(5.0)
            self._metrics.since_last_event.forget(str(target.gvk))
        for target in sorted(wanted - set(self._running)):
            self.log.info("starting watch", target=str(target))
            watch = self._start_watch(target)
            self._running[target] = watch
            watch.start()
        self._metrics.watches.set(len(self._running))

    def stop_all(self, timeout_s: float) -> None:
        for watch in self._running.values():
            watch.request_stop()
        per_watch = timeout_s / max(1, len(self._running))
        for watch in self._running.values():
            watch.join(per_watch)
        self._running.clear()
        self._metrics.watches.set(0)
