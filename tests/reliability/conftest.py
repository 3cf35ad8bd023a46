"""Fixtures of the reliability suite: a pipeline run on the shared broker and on a
kube-apiserver of the test's own.

Why a dedicated API server: these tests restart it and compact its etcd, and other pytest
sessions on the machine restart the shared one when their options differ; neither must
disturb the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from deltawatch.localkube import KubeOptions, LocalKubeServer, ops
from tests.reliability.pipeline_run import PipelineRun

NAMESPACE = "reliability"


@dataclass
class Cluster:
    server: LocalKubeServer
    api: ApiClient
    namespace: str


MakeCluster = Callable[..., Cluster]
MakeRun = Callable[..., PipelineRun]


@pytest.fixture
def make_cluster(make_kube_server: Callable[..., LocalKubeServer]) -> Iterator[MakeCluster]:
    clients: list[ApiClient] = []

    def make(options: KubeOptions | None = None) -> Cluster:
        server = make_kube_server(options)
        api = server.api_client()
        clients.append(api)
        ops.create_namespace(api, NAMESPACE)
        return Cluster(server, api, NAMESPACE)

    try:
        yield make
    finally:
        for api in clients:
            api.close()


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> Cluster:
    return make_cluster()


@pytest.fixture
def make_run(topic_env: dict[str, str], tmp_path: Path) -> Iterator[MakeRun]:
    """``make_run(cluster, replicas=None, **env)`` makes a run (workers not yet started)."""
    runs: list[PipelineRun] = []

    def make(cluster: Cluster, replicas: dict[str, int] | None = None, **env: str) -> PipelineRun:
        run = PipelineRun(
            {
                **topic_env,
                "KUBECONFIG": str(cluster.server.kubeconfig),
                "DELTAWATCH_NAMESPACES": cluster.namespace,
                **env,
            },
            tmp_path,
            replicas,
        )
        runs.append(run)
        return run

    try:
        yield make
    finally:
        for run in runs:
            run.stop_all()
            print(run.log_tails())
