"""The fault scripts, each a function of (run, driver, seeded random, size) → Report.

Why separate from the tests: the CI tests call them with hundreds of changes and a few
rounds, ``long_run.py`` with thousands and many rounds; the scripts are the same. Every
random choice (which worker, when, for how long) comes from the run's seeded ``Random``,
so a printed seed replays the same fault schedule against the same change stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.pipeline_run import PipelineRun, Report, drive, finish

WORKER_NAMES = ("watcher", "differ", "notifier")


def sigkill_rounds(
    run: PipelineRun, driver: ClusterDriver, rng: random.Random, changes: int, rounds: int
) -> Report:
    """SIGKILL a random worker at a random change, restart it a few changes later."""
    report = Report("sigkill", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    moments = sorted(rng.sample(range(10, changes - 10), rounds * 2))
    for kill_at, restart_at in zip(moments[::2], moments[1::2], strict=True):
        name = rng.choice(WORKER_NAMES)
        index = rng.randrange(run.replicas[name])
        faults[kill_at] = lambda n=name, i=index: run.kill(n, i)
        faults[restart_at] = lambda n=name, i=index: run.start(n, i) and None
    report.faults = drive(run, driver, changes, faults, pace_s=0.01) // 2
    return finish(run, driver, report)


def sigterm_rounds(
    run: PipelineRun, driver: ClusterDriver, rng: random.Random, changes: int, rounds: int
) -> Report:
    """SIGTERM each worker in turn mid-run (exit 0 within 10 s), then restart it."""
    report = Report("sigterm", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    moments = sorted(rng.sample(range(10, changes - 10), rounds))
    for round_, at in enumerate(moments):
        name = WORKER_NAMES[round_ % 3]

        def graceful(n: str = name) -> None:
            run.stop_gracefully(n, 0)
            run.start(n, 0)

        faults[at] = graceful
    report.faults = drive(run, driver, changes, faults, pace_s=0.01)
    return finish(run, driver, report)
