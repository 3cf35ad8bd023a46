"""The REST facade with ``DELTAWATCH_API_AUTH=kubernetes``, against the RBAC API server.

The real notifier process authenticates callers with TokenReview and authorises each verb
with SubjectAccessReview, using the chart's notifier ServiceAccount (its token from the
TokenRequest API, its ClusterRole from the chart: create tokenreviews and
subjectaccessreviews, nothing else). Callers are ServiceAccounts too: one bound to the chart's
api-client ClusterRole, one read-only (get, list), one bound to nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient

from deltawatch_tools.localkube import LocalKubeServer
from tests.deploy.conftest import (
    Helm,
    apply,
    ensure_namespace,
    service_account_token,
    token_kubeconfig,
)
from tests.notifier.conftest import NotifierProcess

pytestmark = pytest.mark.deploy

RELEASE_NAMESPACE = "deltawatch"
CLIENTS_NAMESPACE = "dw-clients"
BASE = "/v1/instance/inst-auth/status/subscription"


def rbac(kind: str, name: str, **body: Any) -> dict[str, Any]:
    api_version = "v1" if kind == "ServiceAccount" else "rbac.authorization.k8s.io/v1"
    namespace = {"namespace": CLIENTS_NAMESPACE} if kind == "ServiceAccount" else {}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, **namespace},
        **body,
    }


def binding(name: str, role: str, account: str) -> dict[str, Any]:
    return rbac(
        "ClusterRoleBinding",
        name,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        subjects=[{"kind": "ServiceAccount", "name": account, "namespace": CLIENTS_NAMESPACE}],
    )


@pytest.fixture(scope="module")
def tokens(helm: Helm, rbac_admin: ApiClient, dynamic: DynamicClient) -> dict[str, str]:
    """The chart's notifier objects applied; tokens of the notifier and of three callers."""
    for namespace in (RELEASE_NAMESPACE, CLIENTS_NAMESPACE):
        ensure_namespace(rbac_admin, namespace)
    for obj in helm.template():
        labels = obj["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component") == "notifier" and obj["kind"] in {
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
        }:
            apply(dynamic, obj, dry_run=False)
    reader_role = rbac(
        "ClusterRole",
        "dw-test-subscription-reader",
        rules=[
            {
                "apiGroups": ["deltawatch.io"],
                "resources": ["subscriptions"],
                "verbs": ["get", "list"],
            }
        ],
    )
    for obj in (
        rbac("ServiceAccount", "allowed"),
        rbac("ServiceAccount", "reader"),
        rbac("ServiceAccount", "denied"),
        reader_role,
        binding("dw-test-allowed", "dw-deltawatch-deltawatch-api-client", "allowed"),
        binding("dw-test-reader", "dw-test-subscription-reader", "reader"),
    ):
        apply(dynamic, obj, dry_run=False)
    found = {
        name: service_account_token(rbac_admin, CLIENTS_NAMESPACE, name)
        for name in ("allowed", "reader", "denied")
    }
    found["notifier"] = service_account_token(
        rbac_admin, RELEASE_NAMESPACE, "dw-deltawatch-notifier"
    )
    return found


@pytest.fixture
def notifier(
    rbac_kube: LocalKubeServer,
    tokens: dict[str, str],
    topic_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[NotifierProcess]:
    tag = uuid.uuid4().hex[:8]
    kubeconfig = token_kubeconfig(rbac_kube, tokens["notifier"], tmp_path / "notifier.kubeconfig")
    env = {
        **topic_env,
        "DELTAWATCH_NOTIFIER_GROUP_ID": f"notifier-auth-{tag}",
        "DELTAWATCH_TRANSACTIONAL_ID": f"notifier-auth-{tag}",
        "DELTAWATCH_SECRET_KEY": Fernet.generate_key().decode(),
        "DELTAWATCH_LOG_FORMAT": "console",
        "DELTAWATCH_API_AUTH": "kubernetes",
        "KUBECONFIG": str(kubeconfig),
    }
    process = NotifierProcess(env, tmp_path / "notifier.log").start()
    yield process
    if process.process is not None and process.process.poll() is None:
        assert process.stop() == 0


def call(
    notifier: NotifierProcess, method: str, path: str, token: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, notifier.base + path, headers=headers, timeout=20, **kw)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) >= {"code", "message"}, body
    return str(body["error"]["code"])


def test_who_may_call_the_facade(notifier: NotifierProcess, tokens: dict[str, str]) -> None:
    missing = call(notifier, "GET", BASE)
    assert missing.status_code == 401
    assert error_code(missing) == "unauthenticated"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = call(notifier, "GET", BASE, token="not-a-token")
    assert wrong.status_code == 401
    assert error_code(wrong) == "unauthenticated"
    denied = call(notifier, "GET", BASE, token=tokens["denied"])
    assert denied.status_code == 403
    assert error_code(denied) == "forbidden"
    assert "system:serviceaccount:dw-clients:denied" in denied.json()["error"]["message"]

    allowed = tokens["allowed"]
    assert call(notifier, "GET", BASE, token=allowed).json() == []
    body = {"name": "sub-1", "callback-url": "http://127.0.0.1:9/notify", "min-notify-interval": 0}
    created = call(notifier, "POST", BASE, token=allowed, json=body)
    assert created.status_code == 201, created.text
    assert call(notifier, "GET", f"{BASE}/sub-1", token=allowed).status_code == 200
    updated = call(
        notifier, "PUT", f"{BASE}/sub-1", token=allowed, json={**body, "metadata": {"a": "b"}}
    )
    assert updated.status_code == 200, updated.text

    reader = tokens["reader"]  # get and list only: per-verb authorisation
    assert call(notifier, "GET", f"{BASE}/sub-1", token=reader).status_code == 200
    assert call(notifier, "GET", BASE, token=reader).status_code == 200
    refused = call(notifier, "DELETE", f"{BASE}/sub-1", token=reader)
    assert refused.status_code == 403
    assert error_code(refused) == "forbidden"
    assert call(notifier, "POST", BASE, token=reader, json=body).status_code == 403

    assert call(notifier, "DELETE", f"{BASE}/sub-1", token=allowed).status_code == 202


def test_probes_metrics_and_the_document_stay_open(
    notifier: NotifierProcess, tokens: dict[str, str]
) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert call(notifier, "GET", path).status_code == 200, path
    for _ in range(3):
        assert call(notifier, "GET", BASE, token=tokens["allowed"]).status_code == 200
    call(notifier, "GET", BASE)
    call(notifier, "GET", BASE, token=tokens["denied"])
    text = notifier.wait_metric(
        'deltawatch_notifier_rest_auth_total{outcome="allowed"} 3.0',
        'deltawatch_notifier_rest_auth_total{outcome="unauthenticated"} 1.0',
        'deltawatch_notifier_rest_auth_total{outcome="forbidden"} 1.0',
    )
    # Three requests of one caller: one review of each kind asked of the API server, the rest
    # answered from the cache.
    assert 'deltawatch_notifier_rest_auth_reviews_total{review="token",source="cache"} 2.0' in text
    assert 'deltawatch_notifier_rest_auth_reviews_total{review="access",source="cache"} 2.0' in text


def test_auth_without_a_kubernetes_client_is_a_configuration_error(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        "DELTAWATCH_API_AUTH": "kubernetes",
        "KUBECONFIG": str(tmp_path / "missing"),
        "HOME": str(tmp_path),
        "DELTAWATCH_HTTP_PORT": "0",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.notifier"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "configuration error: DELTAWATCH_API_AUTH=kubernetes" in result.stderr
