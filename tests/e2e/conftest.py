"""The whole pipeline as real subprocesses: broker, kube-apiserver, three workers, a sink."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from deltawatch.settings import CommonSettings
from deltawatch_tools.callback_sink import CallbackSink
from deltawatch_tools.local_pipeline import (
    WORKERS,
    WorkerProcess,
    start_worker,
    stop_workers,
    wait_ready,
)
from deltawatch_tools.localkube.server import LocalKubeServer


@dataclass
class Pipeline:
    env: dict[str, str]
    workers: dict[str, WorkerProcess]
    settings: CommonSettings
    namespace: str
    logs: Path


@pytest.fixture
def callback_sink() -> Iterator[CallbackSink]:
    with CallbackSink() as sink:
        yield sink


@contextmanager
def running_pipeline(
    topic_env: dict[str, str], kube_server: LocalKubeServer, namespaces: list[str], logs: Path
) -> Iterator[Pipeline]:
    """The three workers watching ``namespaces`` (the first is the pipeline's), until exit."""
    env = {
        **topic_env,
        "KUBECONFIG": str(kube_server.kubeconfig),
        "DELTAWATCH_NAMESPACES": ",".join(namespaces),
        "DELTAWATCH_HEARTBEAT_S": "2",
    }
    workers = {name: start_worker(name, env, log_path=logs / f"{name}.log") for name in WORKERS}
    try:
        wait_ready(list(workers.values()), timeout_s=120)
        yield Pipeline(env, workers, CommonSettings(**env), namespaces[0], logs)
    finally:
        stop_workers(list(workers.values()))
        for name in WORKERS:
            log = logs / f"{name}.log"
            if log.exists():
                print(f"----- {name} log (tail) -----")
                print(log.read_text(errors="replace")[-4000:])


@pytest.fixture
def pipeline(
    topic_env: dict[str, str],
    kube_server: LocalKubeServer,
    kube_namespace: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    with running_pipeline(topic_env, kube_server, [kube_namespace], tmp_path) as started:
        yield started
