"""The watcher as an active/standby pair: two real watcher processes on one Lease, a real differ.

Each test runs two ``python -m services.watcher`` for one cluster with leader election on (a
short lease), and a real differ whose deltas are what the assertions read: no change made
during a handover is lost, none is reported twice (one created/modified entry per
resourceVersion at most), and the deltas never go back to an older value. The role is read
from ``/readyz`` (``role``) as an operator would; waits poll with a deadline. Handover times
are printed (``-s``) and only bounded loosely; ``bench/watcher_failover.py`` measures them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiClient, CoordinationV1Api
from kubernetes.client.exceptions import ApiException

from deltawatch_tools.local_state import free_port
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer
from tests.differ.harness import DifferProcess, TopicReader, differ_env, fold_state, wait_until
from tests.watcher.conftest import LABEL, WatcherProcess, configmap, watcher_env
from tests.watcher.fault_proxy import FaultProxy

pytestmark = [pytest.mark.kafka, pytest.mark.kube]

INSTANCE = "inst-pair"
CLUSTER = "pair"
SHORT_LEASE = {
    "DELTAWATCH_LEASE_DURATION_S": "3",
    "DELTAWATCH_LEASE_RENEW_DEADLINE_S": "2",
    "DELTAWATCH_LEASE_RETRY_PERIOD_S": "0.5",
}


def role(watcher: WatcherProcess) -> str | None:
    try:
        body: dict[str, Any] = httpx.get(f"{watcher.base}/readyz", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None
    value = body.get("role")
    return value if isinstance(value, str) else None


def full_log(watcher: WatcherProcess) -> str:
    """The whole log (``logs()`` keeps only its tail, which failing lease calls soon fill)."""
    return watcher.log_path.read_text(errors="replace")


def gauge(watcher: WatcherProcess, name: str) -> float:
    for line in watcher.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


@dataclass
class Pair:
    watchers: list[WatcherProcess]
    differ: DifferProcess
    deltas: TopicReader
    namespace: str
    api: ApiClient

    def roles(self) -> tuple[WatcherProcess, WatcherProcess]:
        """(leader, standby), once exactly one leads and the other stands by."""
        found: list[tuple[WatcherProcess, WatcherProcess]] = []

        def one_leads() -> bool:
            roles = [role(w) for w in self.watchers]
            if sorted(r or "" for r in roles) != ["leader", "standby"]:
                return False
            leader = self.watchers[roles.index("leader")]
            standby = self.watchers[roles.index("standby")]
            found.append((leader, standby))
            return True

        wait_until(one_leads, 30, "exactly one watcher leading")
        return found[-1]

    def cm(self, name: str, value: str) -> None:
        """Create or change ConfigMap ``name`` to ``value``."""
        body = configmap(self.namespace, name, INSTANCE, v=value)
        try:
            ops.update(self.api, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            ops.create(self.api, body)

    def truth(self) -> dict[str, str]:
        page = ops.list_objects(
            self.api, "v1", "ConfigMap", self.namespace, label_selector=f"{LABEL}={INSTANCE}"
        )
        return {o["metadata"]["name"]: o["data"]["v"] for o in page["items"]}

    def reported(self) -> dict[str, str]:
        return {name: obj["data"]["v"] for name, obj in fold_state(self.deltas.deltas()).items()}

    def wait_deltas_match_truth(self, timeout_s: float = 30.0) -> None:
        self.deltas.wait_for(lambda: self.reported() == self.truth(), "deltas = API", timeout_s)

    def entries(self) -> list[tuple[str, str, str]]:
        """(name, resourceVersion, value) of every created / modified entry, in order."""
        out = []
        for delta in self.deltas.deltas():
            changes = delta.data["resource-changes"]
            for entry in changes["created"] + changes["modified"]:
                meta = entry["status"]["metadata"]
                out.append((entry["name"], meta["resourceVersion"], entry["status"]["data"]["v"]))
        return out

    def assert_exactly_once(self) -> None:
        self.wait_deltas_match_truth()
        seen = [(name, rv) for name, rv, _ in self.entries()]
        assert len(seen) == len(set(seen)), f"an entry reported twice: {self.entries()}"


def lease_env(
    topic_env: dict[str, str], kubeconfig: Path, namespace: str, **lease: str
) -> dict[str, str]:
    return watcher_env(
        topic_env,
        kubeconfig,
        namespace,
        DELTAWATCH_RESOURCE_TYPES="v1/ConfigMap",
        DELTAWATCH_CLUSTER=CLUSTER,
        DELTAWATCH_LEADER_ELECTION="true",
        DELTAWATCH_LEASE_NAMESPACE=namespace,
        **(lease or SHORT_LEASE),
    )


@pytest.fixture
def make_pair(
    topic_env: dict[str, str],
    kubeconfig: Path,
    kube_namespace: str,
    kube_api: ApiClient,
    start_watcher: Callable[..., WatcherProcess],
    tmp_path: Path,
) -> Iterator[Callable[..., Pair]]:
    made: list[Pair] = []

    def make(first_kubeconfig: Path | None = None, **lease: str) -> Pair:
        """Two watchers; with ``first_kubeconfig`` the first (using it) leads before the
        second starts."""
        env = lease_env(topic_env, kubeconfig, kube_namespace, **lease)
        if first_kubeconfig is None:
            first = start_watcher(env, wait_ready=False)
        else:
            first = start_watcher({**env, "KUBECONFIG": str(first_kubeconfig)})
            wait_role(first, "leader", 30)
        second = start_watcher({**env, "DELTAWATCH_HTTP_PORT": str(free_port())}, wait_ready=False)
        # One record per transaction: a stale record's effect cannot hide inside a batch's net
        # change (v3 -> v2 -> v3 would be no change at all).
        differ = DifferProcess(
            differ_env(topic_env, DELTAWATCH_BATCH_MAX="1"), "tx-pair", tmp_path / "differ.log"
        ).start()
        for watcher in (first, second):
            watcher.wait_ready()
        differ.wait_ready()
        reader = TopicReader(topic_env["KAFKA_BOOTSTRAP_SERVERS"], env["DELTAWATCH_DELTAS_TOPIC"])
        made.append(Pair([first, second], differ, reader, kube_namespace, kube_api))
        return made[-1]

    yield make
    for pair in made:
        pair.deltas.close()
        pair.differ.kill()
        for watcher in pair.watchers:  # a paused one must be able to die
            if watcher.process is not None and watcher.process.poll() is None:
                os.kill(watcher.process.pid, signal.SIGCONT)


def sample_roles(
    watchers: list[WatcherProcess], until: Callable[[tuple[str | None, ...]], bool]
) -> list[tuple[str | None, ...]]:
    """Both roles, sampled together every few tens of milliseconds, until ``until``."""
    samples: list[tuple[str | None, ...]] = []

    def sample() -> bool:
        samples.append(tuple(role(w) for w in watchers))
        return until(samples[-1])

    wait_until(sample, 15, "the roles to change")
    return samples


def wait_role(watcher: WatcherProcess, wanted: str, timeout_s: float) -> float:
    """Poll until ``watcher`` reports ``wanted``; the monotonic time it was first seen."""
    wait_until(lambda: role(watcher) == wanted, timeout_s, f"{watcher.base} {wanted}")
    return time.monotonic()


def test_sigkill_of_the_leader_standby_takes_over_within_the_lease(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    leader, standby = pair.roles()
    assert gauge(leader, "deltawatch_watcher_leader") == 1
    assert gauge(standby, "deltawatch_watcher_leader") == 0
    for i in range(3):
        pair.cm(f"cm-{i}", "0")
    pair.wait_deltas_match_truth()

    killed_at = time.monotonic()
    leader.kill()  # SIGKILL: the lease is not released, it has to expire
    pair.cm("cm-0", "1")  # changes while nobody leads: the new leader's list catches up
    pair.cm("cm-3", "0")
    ops.delete(pair.api, configmap(pair.namespace, "cm-2", INSTANCE))
    took = wait_role(standby, "leader", 3 + 5) - killed_at
    pair.cm("cm-1", "1")  # and one the new leader watches
    print(f"SIGKILL -> standby leading: {took:.2f} s (lease 3 s)")

    pair.assert_exactly_once()
    assert took < 3 + 3  # the lease duration, two retry periods and a margin
    assert gauge(standby, "deltawatch_watcher_leader") == 1
    assert 'deltawatch_watcher_leader_transitions_total{to="leader"} 1.0' in standby.metrics()
    assert '"event": "leading"' in full_log(standby)


def test_sigterm_releases_the_lease_and_the_standby_takes_over_at_once(
    make_pair: Callable[..., Pair],
) -> None:
    """A lease of 8 s: without the release the standby would wait about that long."""
    pair = make_pair(
        DELTAWATCH_LEASE_DURATION_S="8",
        DELTAWATCH_LEASE_RENEW_DEADLINE_S="5",
        DELTAWATCH_LEASE_RETRY_PERIOD_S="0.5",
    )
    leader, standby = pair.roles()
    lease_name = f"deltawatch-watcher-{CLUSTER}"
    before = CoordinationV1Api(pair.api).read_namespaced_lease(lease_name, pair.namespace)
    pair.cm("a", "0")
    pair.wait_deltas_match_truth()

    assert leader.process is not None
    leader.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    pair.cm("a", "1")
    took = wait_role(standby, "leader", 10) - signalled
    assert leader.process.wait(10) == 0
    print(f"SIGTERM -> standby leading: {took:.2f} s (lease 8 s)")

    assert took < 4.0
    after = CoordinationV1Api(pair.api).read_namespaced_lease(lease_name, pair.namespace)
    assert after.spec.lease_transitions == before.spec.lease_transitions + 1
    assert after.spec.holder_identity != before.spec.holder_identity
    pair.cm("b", "0")
    pair.assert_exactly_once()


def test_a_lease_deleted_while_the_pair_runs_loses_no_change(
    make_pair: Callable[..., Pair], kube_api: ApiClient, kube_namespace: str
) -> None:
    """Deleted by hand (or with its namespace): whichever watcher writes it next creates it
    again, with an epoch above the old Lease's, so the differ's fence does not drop the next
    terms' records as a deposed leader's."""
    leases = CoordinationV1Api(kube_api)
    lease_name = f"deltawatch-watcher-{CLUSTER}"
    # A Lease that has seen a few terms already: the differ learns an epoch above 5.
    body: Any = {
        "metadata": {"name": lease_name, "namespace": kube_namespace},
        "spec": {"leaseDurationSeconds": 3, "leaseTransitions": 5},
    }
    leases.create_namespaced_lease(kube_namespace, body)
    pair = make_pair()
    pair.roles()
    pair.cm("a", "0")
    pair.wait_deltas_match_truth()

    before = leases.read_namespaced_lease(lease_name, pair.namespace)
    leases.delete_namespaced_lease(lease_name, pair.namespace)

    def recreated() -> bool:
        try:
            lease = leases.read_namespaced_lease(lease_name, pair.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return bool(lease.metadata.uid != before.metadata.uid)

    wait_until(recreated, 30, "the Lease created again")
    # A term of the new Lease: its records must be admitted.
    leader, standby = pair.roles()
    assert leader.process is not None
    leader.process.send_signal(signal.SIGTERM)
    wait_role(standby, "leader", 10)
    pair.cm("a", "1")
    pair.cm("b", "0")
    pair.assert_exactly_once()
    assert pair.reported() == {"a": "1", "b": "0"}
    after = leases.read_namespaced_lease(lease_name, pair.namespace)
    assert after.spec.lease_transitions > before.spec.lease_transitions


def test_a_paused_leader_resumed_after_losing_the_lease_publishes_nothing(
    make_pair: Callable[..., Pair],
) -> None:
    """SIGSTOP the leader past its lease; while it is paused the standby leads and ``x`` moves
    on (v2, v3). Resumed, the old leader's watch stream still delivers v2 and v3 and its Kafka
    client still holds what it had queued: the deltas must never go back from v3 to v2."""
    pair = make_pair()
    old, new = pair.roles()
    pair.cm("x", "v1")
    pair.wait_deltas_match_truth()
    assert old.process is not None

    os.kill(old.process.pid, signal.SIGSTOP)
    try:
        pair.cm("x", "v2")
        wait_role(new, "leader", 3 + 5)
        pair.wait_deltas_match_truth()
        pair.cm("x", "v3")
        pair.wait_deltas_match_truth()
    finally:
        os.kill(old.process.pid, signal.SIGCONT)
    wait_role(old, "standby", 10)
    assert gauge(old, "deltawatch_watcher_leader") == 0
    wait_until(lambda: "standing by" in full_log(old).split("lost leadership", 1)[-1], 10, "log")
    pair.cm("x", "v4")  # after anything the old leader could still have sent
    pair.wait_deltas_match_truth()

    values = [value for name, _, value in pair.entries() if name == "x"]
    assert values == ["v1", "v2", "v3", "v4"]
    pair.assert_exactly_once()

    # The old leader, its queue purged, leads again cleanly once the other one dies.
    new.kill()
    wait_role(old, "leader", 3 + 5)
    pair.cm("x", "v5")
    pair.assert_exactly_once()
    assert [value for name, _, value in pair.entries() if name == "x"][-1] == "v5"


def test_a_leader_cut_off_from_the_api_server_stops_leading_before_the_standby_starts(
    make_pair: Callable[..., Pair], kube_server: LocalKubeServer, tmp_path: Path
) -> None:
    """A network partition between the leader and the API server (Kafka still reachable): it
    cannot renew, so it must stand by at its renew deadline (2 s), before the standby may take
    the Lease (3 s after it last saw it change) — never two leaders at once."""
    proxy = FaultProxy(int(kube_server.server_url.rsplit(":", 1)[1]))
    try:
        config = json.loads(kube_server.kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        proxied = tmp_path / "proxied-kubeconfig"
        proxied.write_text(json.dumps(config))
        pair = make_pair(first_kubeconfig=proxied)
        cut_off, _ = pair.roles()
        assert cut_off is pair.watchers[0]
        pair.cm("y", "1")
        pair.wait_deltas_match_truth()

        proxy.cut()
        pair.cm("y", "2")  # the cut-off leader cannot see it; the next leader's list will
        samples = sample_roles(pair.watchers, until=lambda roles: roles[1] == "leader")
        assert ("leader", "leader") not in samples, samples
        assert samples[-1] == ("standby", "leader")
        wait_until(
            lambda: "lease not renewed within the renew deadline" in full_log(cut_off), 10, "log"
        )
        pair.assert_exactly_once()
        proxy.restore()
        pair.cm("y", "3")
        pair.assert_exactly_once()
        assert role(cut_off) == "standby"
    finally:
        proxy.close()
