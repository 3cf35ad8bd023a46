"""Notifier benchmark (run on demand): deliveries/s and memory per subscription.

    .venv/bin/python bench/notifier_throughput.py [--subscriptions 10000] [--instances 1000]

Setup: a local sink (uvicorn + a tiny ASGI app in its own process, counting POSTs), the real
notifier as a subprocess (``python -m services.notifier``) on fresh topics, and N
subscriptions (interval 0) spread over M instances, created through the commands topic.

1. Memory: the notifier's RSS before the subscriptions exist and once its
   ``deltawatch_notifier_subscriptions`` gauge shows all of them; the difference / N.
2. Deliveries/s: one delta (one created Pod) per instance is produced; every subscription of
   that instance gets a callback, so N callbacks in all. Timed from the first delta produced
   to the sink's N-th POST: this includes consuming, the transaction that records each
   notification in the outbox, the POST, and the transaction that records the outcome.
3. Baseline in the same run: a bare ``httpx.AsyncClient`` loop POSTing the same number of
   bodies of the same size to the same sink, with as many requests in flight as the notifier
   may have (``--concurrency``, default 50; httpx to one host slows down past a few dozen
   connections, so both sides get the same number).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from cryptography.fernet import Fernet

from deltawatch.cloud_events import DELTA_TYPE, new_event, to_kafka
from deltawatch.kafka_clients import make_producer
from deltawatch.settings import CommonSettings
from deltawatch_tools.local_state import free_port
from deltawatch_tools.localkafka.broker import LocalKafkaBroker


def bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    broker = LocalKafkaBroker()
    state = broker.status() or broker.start()
    return state.bootstrap


def run_sink(port: int) -> None:
    import uvicorn

    count = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal count
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if not message.get("more_body"):
                break
        if scope["method"] == "POST":
            count += 1
            body = b""
        else:
            body = str(count).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def sink_count(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/count", timeout=10).text)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


async def bare_loop(url: str, body: bytes, total: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=10000)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="POSTs in flight (notifier: DELTAWATCH_DELIVERY_CONCURRENCY; bare loop)",
    )
    args = parser.parse_args()
    per_instance = args.subscriptions // args.instances
    total = per_instance * args.instances

    suffix = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap(),
        "DELTAWATCH_PARTITIONS": "3",
        "DELTAWATCH_COMMANDS_TOPIC": f"bench.commands.{suffix}",
        "DELTAWATCH_COMMAND_RESULTS_TOPIC": f"bench.results.{suffix}",
        "DELTAWATCH_SUBSCRIPTIONS_TOPIC": f"bench.subscriptions.{suffix}",
        "DELTAWATCH_RESOURCE_EVENTS_TOPIC": f"bench.resource-events.{suffix}",
        "DELTAWATCH_DELTAS_TOPIC": f"bench.deltas.{suffix}",
        "DELTAWATCH_CPS_TOPIC": f"bench.cps.{suffix}",
        "DELTAWATCH_DLQ_TOPIC": f"bench.dlq.{suffix}",
        "DELTAWATCH_NOTIFIER_GROUP_ID": f"bench-notifier-{suffix}",
        "DELTAWATCH_TRANSACTIONAL_ID": f"bench-notifier-{suffix}",
        "DELTAWATCH_SECRET_KEY": Fernet.generate_key().decode(),
        "DELTAWATCH_LOG_LEVEL": "WARNING",
        "DELTAWATCH_DELIVERY_CONCURRENCY": str(args.concurrency),
    }
    for name, value in env.items():
        os.environ[name] = value
    settings = CommonSettings()

    sink_port = free_port()
    sink = multiprocessing.Process(target=run_sink, args=(sink_port,), daemon=True)
    sink.start()
    wait(lambda: _up(sink_port), 30, "the sink")

    port = free_port()
    notifier = subprocess.Popen(
        [sys.executable, "-m", "services.notifier"],
        env={**os.environ, "DELTAWATCH_HTTP_PORT": str(port)},
    )
    try:
        wait(lambda: _ready(port), 90, "the notifier")
        rss_before = rss_kib(notifier.pid)

        producer = make_producer(settings, client_id="bench")
        url = f"http://127.0.0.1:{sink_port}/notify"
        started = time.perf_counter()
        for i in range(args.instances):
            instance = f"inst-{i}"
            for j in range(per_instance):
                command = {
                    "command-id": f"c-{i}-{j}",
                    "action": "create",
                    "instance-id": instance,
                    "subscription": {
                        "name": f"sub-{j}",
                        "callback-url": url,
                        "min-notify-interval": 0,
                        "metadata": {"j": j},
                    },
                }
                _produce(producer, settings.commands_topic, instance, json.dumps(command).encode())
        producer.flush(60)
        wait(
            lambda: metric(port, "deltawatch_notifier_subscriptions") >= total,
            600,
            "all subscriptions",
        )
        created_s = time.perf_counter() - started
        rss_after = rss_kib(notifier.pid)

        baseline_count = sink_count(sink_port)
        started = time.perf_counter()
        body = b""
        for i in range(args.instances):
            instance = f"inst-{i}"
            event = new_event(
                event_type=DELTA_TYPE,
                source=settings.source,
                event_id=f"{instance}:1",
                subject=instance,
                data={
                    "instance-id": instance,
                    "cluster": "default",
                    "sequence": 1,
                    "resource-changes": {
                        "created": [_pod(instance)],
                        "deleted": [],
                        "modified": [],
                    },
                },
            )
            record = to_kafka(event, instance)
            body = (
                body
                or json.dumps(
                    {
                        "instance-id": instance,
                        "subscription-name": "sub-0",
                        "metadata": {"j": 0},
                        "resource-changes": {
                            "created": [_pod(instance)],
                            "deleted": [],
                            "modified": [],
                        },
                    },
                    separators=(",", ":"),
                ).encode()
            )
            producer.produce(
                settings.deltas_topic,
                key=record.key,
                value=record.value,
                headers=cast(Any, record.headers),  # a list of (str, bytes) is one of its forms
            )
        producer.flush(60)
        wait(lambda: sink_count(sink_port) - baseline_count >= total, 900, "all callbacks")
        notifier_s = time.perf_counter() - started
        wait(
            lambda: (
                metric(port, 'deltawatch_notifier_deliveries_total{outcome="delivered"}') >= total
            ),
            120,
            "delivery bookkeeping",
        )
        rss_delivered = rss_kib(notifier.pid)

        bare_s = asyncio.run(bare_loop(url, body, total, args.concurrency))

        print(
            f"subscriptions: {total} across {args.instances} instances "
            f"(created and applied in {created_s:.1f} s, {total / created_s:.0f} commands/s)"
        )
        print(
            f"notifier RSS: {rss_before / 1024:.1f} MiB idle, {rss_after / 1024:.1f} MiB "
            f"with subscriptions, {rss_delivered / 1024:.1f} MiB after delivering"
        )
        print(
            f"memory per subscription: {(rss_after - rss_before) * 1024 / total:.0f} bytes "
            f"({(rss_delivered - rss_before) * 1024 / total:.0f} bytes after one delivery each)"
        )
        print(
            f"notifier: {total} callbacks in {notifier_s:.2f} s = {total / notifier_s:.0f} "
            "deliveries/s (delta consumed → outbox txn → POST → outcome txn)"
        )
        print(
            f"bare httpx loop: {total} POSTs in {bare_s:.2f} s = {total / bare_s:.0f} POSTs/s "
            f"({args.concurrency} in flight, same sink, body {len(body)} bytes)"
        )
        print(f"ratio notifier / bare: {bare_s / notifier_s:.2f}")
    finally:
        notifier.send_signal(signal.SIGTERM)
        try:
            notifier.wait(timeout=15)
        except subprocess.TimeoutExpired:
            notifier.kill()
        sink.terminate()


def _produce(producer: Any, topic: str, key: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value)
            return
        except BufferError:
            producer.poll(0.1)


def _pod(instance: str) -> dict[str, Any]:
    return {
        "name": f"{instance}-web-0",
        "namespace": "bench",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {
            "kind": "Pod",
            "metadata": {"name": f"{instance}-web-0"},
            "status": {"phase": "Running"},
        },
    }


def _up(port: int) -> bool:
    try:
        sink_count(port)
        return True
    except httpx.HTTPError:
        return False


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
