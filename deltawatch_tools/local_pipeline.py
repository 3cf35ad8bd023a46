"""``deltawatch run``: the whole pipeline on this machine, no cluster and no Docker.

Starts (or reuses) the local broker, then the three workers as separate processes, exactly as
they would run in production, waits until each reports ready and keeps them running until
Ctrl-C / SIGTERM, when every child is stopped and waited for (no stray processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import typer

from deltawatch_tools.broker_access import pipeline_broker
from deltawatch_tools.local_state import free_port

WORKERS = ("watcher", "differ", "notifier")


@dataclass
class WorkerProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False)

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def start_worker(
    name: str, env: dict[str, str], port: int | None = None, log_path: Path | None = None
) -> WorkerProcess:
    """Start ``python -m services.<name>`` in its own session (Ctrl-C reaches only us)."""
    port = port or free_port()
    child_env = {**os.environ, **env, "DELTAWATCH_HTTP_PORT": str(port)}
    log = log_path.open("ab") if log_path is not None else None
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=child_env,
            start_new_session=True,
            stdout=log,
            stderr=log,
        )
    finally:
        if log is not None:
            log.close()
    return WorkerProcess(name, port, process, child_env)


def stop_workers(workers: list[WorkerProcess], timeout_s: float = 12.0) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        try:
            worker.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def wait_ready(workers: list[WorkerProcess], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if worker.process.poll() is not None:
                raise RuntimeError(f"{worker.name} exited with {worker.process.returncode}")
            if worker.ready():
                typer.echo(f"  {worker.name:<9} ready  http://127.0.0.1:{worker.port}/metrics")
                pending.remove(worker)
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready in {timeout_s}s: {[w.name for w in pending]}")
        time.sleep(0.2)


def run_pipeline(
    log_format: str = typer.Option("console", help="Worker log format: console or json."),
    timeout: float = typer.Option(10.0, help="Seconds to reach Kafka."),
) -> None:
    """Run broker + watcher + differ + notifier locally until Ctrl-C.

    Kafka: KAFKA_BOOTSTRAP_SERVERS, else the local broker (started when none runs)."""
    bootstrap = pipeline_broker(timeout).bootstrap
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DELTAWATCH_LOG_FORMAT": log_format}
    workers: list[WorkerProcess] = []
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        workers = [start_worker(name, env) for name in WORKERS]
        wait_ready(workers)
        typer.echo("Pipeline running; Ctrl-C stops it.")
        while not stopping:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited with {worker.process.returncode}")
            time.sleep(0.5)
    finally:
        stop_workers(workers)
        typer.echo("Stopped.")
