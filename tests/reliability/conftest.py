"""Fixtures of the reliability suite: a pipeline run on the shared broker and on a
kube-apiserver of the suite's own.

Why a dedicated API server: these tests restart it and compact its etcd, and other pytest
sessions on the machine restart the shared one when their options differ; neither must
disturb the other. One server serves the whole session (each test has its own namespace),
started with the watch cache off so that a watch from a compacted revision reaches etcd and
is answered 410 Gone; its etcd is never compacted on its own, only by the kube fault test.

The many-clusters case (CONTRACT §10) adds a second API server (``west_kube``, same options),
started only when a test asks for it; ``west_cluster`` creates there the namespace of the
test's ``cluster``, so both clusters hold objects under the same namespace/names.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from deltawatch_tools.localkube import KubeOptions, LocalKubeServer, ops
from tests.reliability.pipeline_run import PipelineRun

RELIABILITY_KUBE = KubeOptions(watch_cache=False, etcd_compaction_interval="0")
_namespaces = itertools.count()


@dataclass
class Cluster:
    server: LocalKubeServer
    api: ApiClient
    namespace: str


MakeRun = Callable[..., PipelineRun]


@pytest.fixture(scope="session")
def reliability_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKubeServer]:
    server = LocalKubeServer(tmp_path_factory.mktemp("reliability-kube"), progress=None)
    server.ensure_running(RELIABILITY_KUBE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(reliability_kube: LocalKubeServer) -> Iterator[Cluster]:
    api = reliability_kube.api_client()
    namespace = f"reliability-{next(_namespaces)}"
    ops.create_namespace(api, namespace)
    try:
        yield Cluster(reliability_kube, api, namespace)
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def west_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKubeServer]:
    """A second API server: the "west" cluster, beside ``reliability_kube`` ("east")."""
    server = LocalKubeServer(tmp_path_factory.mktemp("reliability-kube-west"), progress=None)
    server.ensure_running(RELIABILITY_KUBE)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def west_cluster(west_kube: LocalKubeServer, cluster: Cluster) -> Iterator[Cluster]:
    """The test's namespace, with the same name as ``cluster``'s, on the second server."""
    api = west_kube.api_client()
    ops.create_namespace(api, cluster.namespace)
    try:
        yield Cluster(west_kube, api, cluster.namespace)
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def make_run(cluster: Cluster, topic_env: dict[str, str], tmp_path: Path) -> Iterator[MakeRun]:
    """``make_run(replicas=None, worker_env=None, **env)`` makes a run (workers not yet
    started) on ``cluster``."""
    runs: list[PipelineRun] = []

    def make(
        replicas: dict[str, int] | None = None,
        worker_env: dict[tuple[str, int], dict[str, str]] | None = None,
        **env: str,
    ) -> PipelineRun:
        run = PipelineRun(
            {
                **topic_env,
                "KUBECONFIG": str(cluster.server.kubeconfig),
                "DELTAWATCH_NAMESPACES": cluster.namespace,
                **env,
            },
            tmp_path,
            replicas,
            worker_env,
        )
        runs.append(run)
        return run

    try:
        yield make
    finally:
        for run in runs:
            run.stop_all()
            print(run.log_tails())
