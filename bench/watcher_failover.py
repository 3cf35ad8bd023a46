"""Watcher pair failover benchmark (run on demand): how long a cluster goes unobserved.

    .venv/bin/python -m bench.watcher_failover [--rounds 5] [--lease 3 --renew 2 --retry 0.5]

Two real watcher processes (``python -m services.watcher``, leader election on) share one
Lease on the local API server and publish to the local broker. Each round signals the leader —
SIGKILL and SIGTERM alternately — changes a ConfigMap right after, and measures from the
signal:

* **leading**: until the standby's ``/readyz`` says ``"role": "leader"``;
* **published**: until the change is on the resource-events topic from the *new* term (its
  ``leader_epoch`` differs from the old one's): what the differ can act on.

The signalled watcher is then started again (it becomes the standby) before the next round.
Printed: each round, then p50 / max per signal. A SIGKILL'd leader's Lease has to expire (the
lease duration, observed by the standby, plus up to one retry period); a SIGTERM'd leader
releases it, so only its shutdown and one retry period remain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from kubernetes.client import ApiClient, CoordinationV1Api
from kubernetes.client.exceptions import ApiException

from deltawatch.avro_serde import AvroSerde
from deltawatch_tools.local_state import free_port
from deltawatch_tools.localkafka.broker import LocalKafkaBroker
from deltawatch_tools.localkube import ops
from deltawatch_tools.localkube.server import LocalKubeServer

REPO = Path(__file__).resolve().parents[1]
LABEL = "k8splugin.io/rb-instance-id"
CLUSTER = "bench"


@dataclass
class Watcher:
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Watcher:
        self.port = free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.watcher"],
                env={**self.env, "DELTAWATCH_HTTP_PORT": str(self.port)},
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def readyz(self) -> tuple[int, dict[str, Any]]:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
            return response.status_code, response.json()
        except (httpx.HTTPError, ValueError):
            return 0, {}

    def role(self) -> str | None:
        return self.readyz()[1].get("role")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait(condition: Any, timeout_s: float, what: str) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def configmap(namespace: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": namespace, "labels": {LABEL: "inst-bench"}},
        "data": {"v": value},
    }


class Published:
    """The probe's records on the resource-events topic, read from the end as of creation."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.serde = AvroSerde.from_file("resource-event.avsc", topic, None)
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"}
        )
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in meta.partitions])

    def seen(self, value: str, old_epoch: int) -> bool:
        for message in self.consumer.consume(100, 0.05):
            if message.error() is not None:
                continue
            record = self.serde.decode(message.value())
            if record["name"] != "probe" or record["leader_epoch"] == old_epoch:
                continue
            if json.loads(record["object"])["data"]["v"] == value:
                return True
        return False


def lease_epoch(api: ApiClient, namespace: str) -> int:
    name = f"deltawatch-watcher-{CLUSTER}"
    lease = CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    if lease.spec is None:
        raise RuntimeError(f"lease {namespace}/{name} has no spec: no leader epoch to read")
    return int(lease.spec.lease_transitions or 0)


def leader_and_standby(watchers: list[Watcher]) -> tuple[Watcher, Watcher]:
    found: list[tuple[Watcher, Watcher]] = []

    def settled() -> bool:
        states = [w.readyz() for w in watchers]
        roles = [body.get("role") for _, body in states]
        if sorted(str(r) for r in roles) != ["leader", "standby"]:
            return False
        if any(code != 200 for code, _ in states):
            return False
        found.append((watchers[roles.index("leader")], watchers[roles.index("standby")]))
        return True

    wait(settled, 60, "one leader and one ready standby")
    return found[-1]


def environment(args: argparse.Namespace, bootstrap: str, kube: LocalKubeServer, ns: str) -> Any:
    suffix = uuid.uuid4().hex[:8]
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KUBECONFIG": str(kube.kubeconfig),
        "DELTAWATCH_RESOURCE_EVENTS_TOPIC": f"t.bench-failover-events.{suffix}",
        "DELTAWATCH_SUBSCRIPTIONS_TOPIC": f"t.bench-failover-subscriptions.{suffix}",
        "DELTAWATCH_APPLICATION_ID": f"bench-failover-{suffix}",
        "DELTAWATCH_PARTITIONS": "3",
        "DELTAWATCH_NAMESPACES": ns,
        "DELTAWATCH_RESOURCE_TYPES": "v1/ConfigMap",
        "DELTAWATCH_CLUSTER": CLUSTER,
        "DELTAWATCH_LEADER_ELECTION": "true",
        "DELTAWATCH_LEASE_NAMESPACE": ns,
        "DELTAWATCH_LEASE_DURATION_S": str(args.lease),
        "DELTAWATCH_LEASE_RENEW_DEADLINE_S": str(args.renew),
        "DELTAWATCH_LEASE_RETRY_PERIOD_S": str(args.retry),
    }


def one_round(
    watchers: list[Watcher], api: ApiClient, ns: str, events: Published, sig: signal.Signals, n: int
) -> tuple[float, float]:
    leader, standby = leader_and_standby(watchers)
    epoch = lease_epoch(api, ns)
    assert leader.process is not None
    signalled = time.monotonic()
    leader.process.send_signal(sig)
    value = f"round-{n}"
    ops.update(api, configmap(ns, value))
    led = wait(lambda: standby.role() == "leader", 60, "the standby leading")
    published = wait(lambda: events.seen(value, epoch), 60, "the change published")
    leader.process.wait(15)
    leader.start()
    return led - signalled, published - signalled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per signal")
    parser.add_argument("--lease", type=int, default=3)
    parser.add_argument("--renew", type=float, default=2.0)
    parser.add_argument("--retry", type=float, default=0.5)
    args = parser.parse_args()
    bootstrap = LocalKafkaBroker().start().bootstrap
    kube = LocalKubeServer()
    kube.ensure_running()
    api = kube.api_client()
    ns = f"bench-failover-{uuid.uuid4().hex[:6]}"
    ops.create_namespace(api, ns)
    logs = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    env = environment(args, bootstrap, kube, ns)
    watchers = [Watcher(env, logs / f"watcher-{i}.log").start() for i in range(2)]
    try:
        ops.create(api, configmap(ns, "start"))
        leader_and_standby(watchers)
        events = Published(bootstrap, env["DELTAWATCH_RESOURCE_EVENTS_TOPIC"])
        times: dict[str, list[tuple[float, float]]] = {"SIGKILL": [], "SIGTERM": []}
        print(f"lease {args.lease} s, renew deadline {args.renew} s, retry {args.retry} s")
        for n in range(2 * args.rounds):
            sig = signal.SIGKILL if n % 2 == 0 else signal.SIGTERM
            led, published = one_round(watchers, api, ns, events, sig, n)
            times[sig.name].append((led, published))
            print(f"round {n:2d} {sig.name}: leading {led:5.2f} s, published {published:5.2f} s")
        for name, rows in times.items():
            led_s = [r[0] for r in rows]
            pub_s = [r[1] for r in rows]
            print(
                f"{name}: leading p50 {statistics.median(led_s):.2f} s max {max(led_s):.2f} s; "
                f"published p50 {statistics.median(pub_s):.2f} s max {max(pub_s):.2f} s"
            )
    finally:
        for watcher in watchers:
            watcher.stop()
        with contextlib.suppress(ApiException):
            ops.delete_namespace(api, ns)
        print(f"logs: {logs}")


if __name__ == "__main__":
    main()
