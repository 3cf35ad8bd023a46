"""The fault scripts, each a function of (run, driver, seeded random, size) → Report.

Why separate from the tests: the CI tests call them with hundreds of changes and a few
rounds, ``long_run.py`` with thousands and many rounds; the scripts are the same. Every
random choice (which worker, when, for how long) comes from the run's seeded ``Random``,
so a printed seed replays the same fault schedule against the same change stream.
"""

from __future__ import annotations

import functools
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from deltawatch_tools.callback_sink import Reply
from deltawatch_tools.local_pipeline import wait_ready
from deltawatch_tools.localkafka.broker import BrokerState, LocalKafkaBroker
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer
from tests.reliability.cluster_driver import ClusterDriver
from tests.reliability.pipeline_run import PipelineRun, Report, drive, drive_clusters, finish

WORKER_NAMES = ("watcher", "differ", "notifier")


def _restart(run: PipelineRun, name: str, index: int) -> None:
    run.start(name, index)


def sigkill_rounds(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    pace_s: float = 0.02,
) -> Report:
    """SIGKILL a worker (each in turn, from a random first) at a random change, restart it
    some changes later."""
    report = Report("sigkill", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    moments = sorted(rng.sample(range(10, changes - 10), rounds * 2))
    first = rng.randrange(3)  # every worker is killed once rounds >= 3
    for round_, (kill_at, restart_at) in enumerate(zip(moments[::2], moments[1::2], strict=True)):
        name = WORKER_NAMES[(first + round_) % 3]
        index = rng.randrange(run.replicas[name])
        faults[kill_at] = functools.partial(run.kill, name, index)
        faults[restart_at] = functools.partial(_restart, run, name, index)
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s) // 2
    return finish(run, driver, report)


def sigterm_rounds(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    pace_s: float = 0.02,
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
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s)
    return finish(run, driver, report)


def sink_faults(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    pace_s: float = 0.02,
) -> Report:
    """The subscriber endpoint misbehaves for a while, then recovers, ``rounds`` times:
    down (connection refused), 500, 429 with Retry-After, hanging past the callback timeout
    (the body arrived: a retry is a true duplicate, deduped by webhook-id)."""
    report = Report("sink", driver.seed)
    sink = run.sink
    misbehaviours: list[Callable[[], None]] = [
        sink.stop,
        lambda: sink.answer_by_default(Reply(500)),
        lambda: sink.answer_by_default(Reply(429, {"Retry-After": "1"})),
        lambda: sink.answer_by_default(Reply(delay_s=3.0)),
    ]
    faults: dict[int, Callable[[], None]] = {}
    slot = changes // rounds  # one misbehaviour per slot, lasting half of it
    for round_ in range(rounds):
        begin = round_ * slot + rng.randrange(max(1, slot // 2))
        end = begin + slot // 2
        if round_ < len(misbehaviours):
            misbehave = misbehaviours[round_]
        else:
            misbehave = rng.choice(misbehaviours)
        faults[begin] = misbehave

        def recover() -> None:
            if sink.down:
                sink.start()
            sink.answer_by_default(Reply())

        faults[end] = recover
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s) // 2
    return finish(run, driver, report)


def kube_faults(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    server: LocalKubeServer,
    pace_s: float = 0.01,
) -> Report:
    """Watches dropped and 410 Gone: kube-apiserver restarted ``rounds`` times; before every
    other restart etcd is compacted, so a re-watch from the last resourceVersion seen is
    refused and the watcher must relist (and the differ find what vanished meanwhile)."""
    report = Report("kube", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    for round_, at in enumerate(sorted(rng.sample(range(10, changes - 10), rounds))):

        def outage(compact: bool = round_ % 2 == 0) -> None:
            if compact:
                server.compact_etcd()
            server.restart_apiserver()

        faults[at] = outage
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s)
    return finish(run, driver, report)


def broker_outages(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    broker: LocalKafkaBroker,
    pace_s: float = 0.02,
) -> Report:
    """The Kafka broker goes away mid-run (SIGKILL, or a clean stop, alternately) while the
    cluster keeps changing, and comes back on the same ports with its data."""
    report = Report("broker", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    moments = sorted(rng.sample(range(10, changes - 10), rounds * 2))
    down: list[BrokerState] = []
    for round_, (begin, end) in enumerate(zip(moments[::2], moments[1::2], strict=True)):

        def stop(hard: bool = round_ % 2 == 0) -> None:
            state = broker.status()
            assert state is not None
            if hard:
                broker.kill()
            else:
                broker.stop(keep_data=True)
            down.append(state)

        faults[begin] = stop

        def resume() -> None:
            broker.resume(down.pop())

        faults[end] = resume
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s) // 2
    return finish(run, driver, report)


def replica_loss(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    pace_s: float = 0.02,
) -> Report:
    """Two differ and two notifier replicas share the work; one of each is SIGKILLed for good
    (the differ's at a third of the run, the notifier's at two thirds) and the survivor takes
    its partitions over. With ``rounds`` > 1, the killed replicas come back and other ones
    are killed, alternating."""
    report = Report("replicas", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    moments = sorted(rng.sample(range(10, changes - 10), rounds * 2))
    for round_, at in enumerate(moments):
        name = ("differ", "notifier")[round_ % 2]
        victim = rng.randrange(2)

        def lose(n: str = name, v: int = victim) -> None:
            for index in range(2):  # the other replica may be down from an earlier round
                if run.workers[(n, index)].process.poll() is not None:
                    run.start(n, index)
            run.kill(n, v)

        faults[at] = lose
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s)
    return finish(run, driver, report)


def _logged(at: int, what: str, fault: Callable[[], None]) -> Callable[[], None]:
    """``fault``, printing what it does and when (the schedule of a seed, for the report)."""

    def run() -> None:
        print(f"[reliability] change {at}: {what}", flush=True)
        fault()

    return run


CLUSTERS = ("east", "west")
"""Watcher index 0 watches east, 1 west (``clusters_worker_env``)."""


def clusters_worker_env(kubeconfigs: Sequence[Path]) -> dict[tuple[str, int], dict[str, str]]:
    """Each watcher's own ``KUBECONFIG`` and ``DELTAWATCH_CLUSTER`` (CONTRACT §10)."""
    return {
        ("watcher", index): {"KUBECONFIG": str(path), "DELTAWATCH_CLUSTER": cluster}
        for index, (cluster, path) in enumerate(zip(CLUSTERS, kubeconfigs, strict=True))
    }


CLUSTERS_REPLICAS = {"watcher": len(CLUSTERS), "differ": 1, "notifier": 1}
CLUSTERS_PARTITIONS = "2"
"""Few partitions: the clusters' instances (the same ids in both) share them."""


def cluster_rounds(
    run: PipelineRun,
    drivers: Sequence[ClusterDriver],
    rng: random.Random,
    changes: int,
    rounds: int,
    pace_s: float = 0.02,
) -> Report:
    """Many clusters, one pipeline: every cluster (one driver each, the same instances and
    object names in all) changes at once while the differ, a watcher (of a random cluster)
    and the notifier are SIGKILLed in turn, from a random first, at random changes and
    restarted some changes later; once, a watcher is SIGTERMed and restarted at once, so
    its cluster lists again while the other keeps flowing. ``changes`` per cluster."""
    report = Report("clusters", drivers[0].seed)
    faults: dict[int, Callable[[], None]] = {}
    moments = sorted(rng.sample(range(10, changes - 10), rounds * 2 + 1))
    graceful_at = moments.pop(rng.randrange(len(moments)))
    victims = ("differ", "watcher", "notifier")
    first = rng.randrange(3)
    for round_, (kill_at, restart_at) in enumerate(zip(moments[::2], moments[1::2], strict=True)):
        name = victims[(first + round_) % 3]
        index = rng.randrange(run.replicas[name])
        label = f"{name}-{index}" + (f" ({CLUSTERS[index]})" if name == "watcher" else "")
        kill = functools.partial(run.kill, name, index)
        faults[kill_at] = _logged(kill_at, f"SIGKILL {label}", kill)
        restart = functools.partial(_restart, run, name, index)
        faults[restart_at] = _logged(restart_at, f"restart {label}", restart)
    watcher = rng.randrange(run.replicas["watcher"])

    def relist() -> None:
        # the other watcher, should this one be down (killed) at the moment
        index = watcher
        if run.workers[("watcher", index)].process.poll() is not None:
            index = (index + 1) % run.replicas["watcher"]
        # SIGTERM a *running* watcher: one restarted a few changes ago may still be
        # importing, before its handler is installed, and would die of the signal (-15)
        wait_ready([run.workers[("watcher", index)]], timeout_s=60)
        print(
            f"[reliability] change {graceful_at}: SIGTERM + restart watcher-{index} "
            f"({CLUSTERS[index]}): it lists again",
            flush=True,
        )
        run.stop_gracefully("watcher", index)
        run.start("watcher", index)

    faults[graceful_at] = relist
    report.faults = drive_clusters(run, drivers, changes, faults, pace_s=pace_s) - rounds
    return finish(run, drivers, report)


# -- the watcher as an active/standby pair (issue 19) ----------------------------------------

PAIR_LEASE = {
    # Short, so a CI run sees several handovers; the validation asks retry < renew < duration.
    "DELTAWATCH_LEASE_DURATION_S": "3",
    "DELTAWATCH_LEASE_RENEW_DEADLINE_S": "2",
    "DELTAWATCH_LEASE_RETRY_PERIOD_S": "0.5",
}
PAIR_REPLICAS = {"watcher": 2, "differ": 1, "notifier": 1}
PAIR_FAULTS = ("sigkill", "sigterm", "sigstop")


def pair_worker_env(namespace: str) -> dict[tuple[str, int], dict[str, str]]:
    """Two watchers of one cluster, electing their leader on a Lease in the run's own
    namespace (so runs never share a Lease), each with an identity of its own that survives
    its restarts (as a StatefulSet's pod name would)."""
    watchers = {
        ("watcher", index): {
            "DELTAWATCH_LEADER_ELECTION": "true",
            "DELTAWATCH_LEASE_NAMESPACE": namespace,
            "DELTAWATCH_WATCHER_IDENTITY": f"watcher-{index}",
            **PAIR_LEASE,
        }
        for index in range(PAIR_REPLICAS["watcher"])
    }
    # One record per differ transaction: a deposed leader's burst of old records (v2, v3
    # after v4) would otherwise net out inside one batch against the snapshot and show
    # nothing; alone, each one the fence let through would be a delta going back in time.
    return {**watchers, ("differ", 0): {"DELTAWATCH_BATCH_MAX": "1"}}


def watcher_role(run: PipelineRun, index: int) -> str | None:
    """``role`` of watcher ``index``'s ``/readyz`` body; None while it does not answer."""
    worker = run.workers[("watcher", index)]
    if worker.process.poll() is not None:
        return None
    try:
        body = httpx.get(f"http://127.0.0.1:{worker.port}/readyz", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None
    role = body.get("role") if isinstance(body, dict) else None
    return role if isinstance(role, str) else None


def pair_leader(run: PipelineRun, timeout_s: float = 60.0) -> int:
    """The index of the leader, once one watcher leads and the other stands by (both up)."""

    def one_leads() -> int | None:
        roles = [watcher_role(run, index) for index in range(2)]
        if sorted(r or "" for r in roles) != ["leader", "standby"]:
            return None
        return roles.index("leader") + 1  # + 1: index 0 must count as found

    return ops.wait_until(one_leads, timeout=timeout_s, interval=0.1, what="one leader") - 1


def _wait_role(run: PipelineRun, index: int, role: str, timeout_s: float) -> None:
    ops.wait_until(
        lambda: watcher_role(run, index) == role,
        timeout=timeout_s,
        interval=0.1,
        what=f"watcher-{index} {role}",
    )


def _lease_s(run: PipelineRun) -> float:
    return float(run.worker_env[("watcher", 0)]["DELTAWATCH_LEASE_DURATION_S"])


class PairFaults:
    """One fault on the current leader, begun at one change and ended at a later one."""

    def __init__(self, run: PipelineRun) -> None:
        self.run = run
        self.victim = 0
        self.paused_at = 0.0
        self.refused = 0.0
        """Records the resumed leaders' own gate refused (``not_leader``), summed."""

    def begin(self, fault: str, at: int) -> None:
        run = self.run
        self.victim = pair_leader(run)
        print(f"[reliability] change {at}: {fault} leader watcher-{self.victim}", flush=True)
        if fault == "sigkill":
            run.kill("watcher", self.victim)
        elif fault == "sigterm":
            run.stop_gracefully("watcher", self.victim)  # releases the Lease: exit 0 in 10 s
            run.start("watcher", self.victim)
        else:
            run.signal("watcher", self.victim, signal.SIGSTOP)
            self.paused_at = time.monotonic()

    def end(self, fault: str, at: int) -> None:
        run, other = self.run, 1 - self.victim
        lease_s = _lease_s(run)
        if fault == "sigkill":
            # restarted once the survivor leads, so it comes back as the standby
            _wait_role(run, other, "leader", lease_s + 10)
            print(f"[reliability] change {at}: restart watcher-{self.victim}", flush=True)
            run.start("watcher", self.victim)
        elif fault == "sigstop":
            _wait_role(run, other, "leader", lease_s + 10)
            # the fault's duration: paused for longer than the whole lease, not a sync
            time.sleep(max(0.0, self.paused_at + lease_s + 1.0 - time.monotonic()))
            paused = time.monotonic() - self.paused_at
            print(
                f"[reliability] change {at}: SIGCONT watcher-{self.victim} after {paused:.1f}s",
                flush=True,
            )
            run.workers[("watcher", self.victim)].process.send_signal(signal.SIGCONT)
            run.expected_exits.discard(("watcher", self.victim))
            # resumed past its renew deadline, it must step down by itself
            _wait_role(run, self.victim, "standby", 10)
            self.refused += run.metric(
                "watcher",
                self.victim,
                "deltawatch_watcher_publish_errors_total",
                reason="not_leader",
            )


def pair_rounds(
    run: PipelineRun,
    driver: ClusterDriver,
    rng: random.Random,
    changes: int,
    rounds: int,
    pace_s: float = 0.02,
) -> Report:
    """Issue 19: the watcher as an active/standby pair on a Lease. In turn, from a random
    first: the current leader (found by ``/readyz`` ``role``) is SIGKILLed and restarted once
    the standby leads; SIGTERMed (it releases the Lease) and restarted at once; SIGSTOPed for
    longer than the lease (the standby takes over meanwhile), then SIGCONTed: it must step
    down by itself, and what it still had queued must not reach the subscribers. One fault
    per slot of ``changes // rounds`` changes, lasting half of it."""
    report = Report("pair", driver.seed)
    faults: dict[int, Callable[[], None]] = {}
    pair = PairFaults(run)
    slot = changes // rounds
    first = rng.randrange(len(PAIR_FAULTS))
    for round_ in range(rounds):
        fault = PAIR_FAULTS[(first + round_) % len(PAIR_FAULTS)]
        begin = round_ * slot + rng.randrange(max(1, slot // 4)) + 1
        end = begin + slot // 2
        faults[begin] = functools.partial(pair.begin, fault, begin)
        faults[end] = functools.partial(pair.end, fault, end)
    report.faults = drive(run, driver, changes, faults, pace_s=pace_s) // 2
    report = finish(run, driver, report)
    print(f"[reliability] pair: records refused by resumed leaders: {pair.refused:.0f}")
    return report
