"""The chart tier's harness: the real ``helm``, and a real kube-apiserver with RBAC.

``helm`` is whatever is on PATH, else the pinned version built from Go modules into the cache
(:mod:`deltawatch_tools.localhelm`), built when collection is over and before the first test,
with output capture off (as the kube plugin builds kube-apiserver). The API server is one of
this session's own (own state dir), started with ``--authorization-mode=Node,RBAC`` so that
the chart's roles are what decides, and stopped at the end: the shared server runs
AlwaysAllow for every other tier and must stay so. Its admin token is in ``system:masters``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kube_client
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient

from deltawatch.settings import CommonSettings
from deltawatch_tools.localhelm import ensure_helm
from deltawatch_tools.localkube import KubeOptions, LocalKubeServer, ensure_binaries, ops
from tests.watcher.conftest import PublishedEvents

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "deltawatch"
FIELD_MANAGER = "deltawatch-chart-tests"


def pytest_collection_finish(session: pytest.Session) -> None:
    items = [i for i in session.items if "tests/deploy/" in i.nodeid]
    if not items:
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    needs_kube = any("rbac_kube" in getattr(i, "fixturenames", ()) for i in items)

    def build() -> None:
        ensure_helm()
        if needs_kube:
            ensure_binaries()

    if capture is None:
        build()
        return
    with capture.global_and_fixture_disabled():
        build()


class Helm:
    """The ``helm`` command on the chart; every call bounded in time."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        # Helm's own config, cache and data dirs: nothing of the user's is read or written.
        self.env = {
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def template(
        self, *args: str, release: str = "dw", namespace: str = "deltawatch"
    ) -> list[dict[str, Any]]:
        """The chart rendered, as a list of objects (empty documents dropped)."""
        text = self.run("template", release, str(CHART), "--namespace", namespace, *args).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(ensure_helm(progress=None), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def rbac_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKubeServer]:
    """A kube-apiserver of this session, authorising with RBAC."""
    server = LocalKubeServer(tmp_path_factory.mktemp("rbac-kube"), progress=None)
    server.ensure_running(KubeOptions(authorization_mode="Node,RBAC"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rbac_admin(rbac_kube: LocalKubeServer) -> Iterator[ApiClient]:
    api = rbac_kube.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def dynamic(rbac_admin: ApiClient) -> DynamicClient:
    return DynamicClient(rbac_admin)


@pytest.fixture
def events(topic_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[PublishedEvents]:
    """What a watcher published on this test's resource-events topic."""
    for name, value in topic_env.items():
        monkeypatch.setenv(name, value)
    reader = PublishedEvents(CommonSettings())
    try:
        yield reader
    finally:
        reader.close()


def ensure_namespace(api: ApiClient, name: str) -> None:
    existing = {n.metadata.name for n in kube_client.CoreV1Api(api).list_namespace().items}
    if name not in existing:
        ops.create_namespace(api, name, labels={"deltawatch.test/owner": "pytest"})


def apply(dynamic: DynamicClient, obj: dict[str, Any], *, dry_run: bool) -> Any:
    """Server-side apply of one object (``dryRun=All`` when ``dry_run``): the API server
    validates it completely, admission included, and persists nothing on a dry run."""
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return dynamic.server_side_apply(
        resource,
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All" if dry_run else None,
    )


def service_account_token(api: ApiClient, namespace: str, name: str) -> str:
    """A token of the ServiceAccount, from the TokenRequest API (as the kubelet gets one)."""
    request = kube_client.AuthenticationV1TokenRequest(
        spec=kube_client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    answer = kube_client.CoreV1Api(api).create_namespaced_service_account_token(
        name, namespace, request
    )
    return str(answer.status.token)


def token_kubeconfig(server: LocalKubeServer, token: str, path: Path) -> Path:
    """A kubeconfig for ``server`` that authenticates with ``token`` alone."""
    admin = json.loads(server.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def decoded_secret_value(obj: dict[str, Any], key: str) -> str:
    return base64.b64decode(obj["data"][key]).decode()
