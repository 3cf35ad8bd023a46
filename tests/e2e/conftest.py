"""The whole pipeline as real subprocesses: broker, kube-apiserver, three workers, a sink."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def pipeline(
    topic_env: dict[str, str],
    kube_server: LocalKubeServer,
    kube_namespace: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    env = {
        **topic_env,
        "KUBECONFIG": str(kube_server.kubeconfig),
        "DELTAWATCH_NAMESPACES": kube_namespace,
        "DELTAWATCH_HEARTBEAT_S": "2",
    }
    workers = {name: start_worker(name, env, log_path=tmp_path / f"{name}.log") for name in WORKERS}
    try:
        wait_ready(list(workers.values()), timeout_s=120)
        yield Pipeline(env, workers, CommonSettings(**env), kube_namespace, tmp_path)
    finally:
        stop_workers(list(workers.values()))
        for name in WORKERS:
            log = tmp_path / f"{name}.log"
            if log.exists():
                print(f"----- {name} log (tail) -----")
                print(log.read_text(errors="replace")[-4000:])
