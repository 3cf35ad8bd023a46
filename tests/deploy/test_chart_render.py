"""The chart as ``helm`` renders it: lint, values refused by the schema, and what the objects
say (no API server needed; tests/deploy/test_chart_on_apiserver.py has the API server judge
them).

Every setting a worker reads (the aliases of its settings class in deltawatch/settings.py)
must be reachable as a value: the rendered container's env is compared with the class.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import AliasChoices

from deltawatch.settings import (
    CommonSettings,
    DifferSettings,
    NotifierSettings,
    WatcherSettings,
)
from tests.deploy.conftest import CHART, Helm, decoded_secret_value

pytestmark = pytest.mark.deploy

EXAMPLES = CHART / "examples" / "multi-cluster"


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} not rendered exactly once"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    value: dict[str, Any] = containers[0]
    return value


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload)["env"]}


def variables(settings: type[CommonSettings]) -> set[str]:
    names = set()
    for field in settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
    return names


def test_lint_passes_with_the_defaults_and_the_examples(helm: Helm) -> None:
    helm.run("lint", "--strict", str(CHART))
    for example in sorted(EXAMPLES.glob("*.yaml")):
        helm.run("lint", "--strict", str(CHART), "-f", str(example))


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "watcher.replicas=two"], "replicas"),  # wrong type
        (["--set", "watcher.replica=2"], "replica"),  # unknown key in a worker block
        (["--set", "notifier.api.auth=basic"], "auth"),  # bad enum
        (["--set", "logFormat=xml"], "logFormat"),
        (["--set", "notifier.cpsEventFormat=yaml"], "cpsEventFormat"),
        (["--set", "partitions=0"], "partitions"),
        (["--set", "topics.deltas=bad topic"], "deltas"),
        (["--set", "kafka.bootstrap=x"], "bootstrap"),
        (["--set-json", 'watcher.resourceTypes=[{"kind":"Pod"}]'], "apiVersion"),
        (["--set", "unknownTopLevel=1"], "unknownTopLevel"),
    ],
)
def test_a_wrong_value_fails_at_template_time(helm: Helm, args: list[str], complaint: str) -> None:
    result = helm.run("template", "dw", str(CHART), *args, check=False)
    assert result.returncode != 0, f"{args} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert complaint in result.stderr, result.stderr


def test_two_watchers_without_leader_election_are_refused(helm: Helm) -> None:
    result = helm.run(
        "template", "dw", str(CHART), "--set", "watcher.leaderElection.enabled=false", check=False
    )
    assert result.returncode != 0
    assert "needs watcher.leaderElection.enabled" in result.stderr
    one = helm.template(
        "--set", "watcher.leaderElection.enabled=false", "--set", "watcher.replicas=1"
    )
    env = env_of(named(one, "Deployment", "dw-deltawatch-watcher"))
    assert env["DELTAWATCH_LEADER_ELECTION"]["value"] == "false"
    assert not [r for r in by_kind(one, "Role") if r["metadata"]["name"].endswith("-lease")]


def test_the_three_workers_and_their_pods(helm: Helm) -> None:
    objects = helm.template()
    watcher = named(objects, "Deployment", "dw-deltawatch-watcher")
    differ = named(objects, "StatefulSet", "dw-deltawatch-differ")
    notifier = named(objects, "StatefulSet", "dw-deltawatch-notifier")
    assert watcher["spec"]["replicas"] == 2
    assert watcher["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    for workload, port in ((watcher, 9101), (differ, 9102), (notifier, 9103)):
        pod = workload["spec"]["template"]["spec"]
        main = container(workload)
        assert main["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
        assert main["resources"]["requests"]
        assert main["resources"]["limits"]
        assert env_of(workload)["DELTAWATCH_HTTP_PORT"]["value"] == str(port)
        assert pod["serviceAccountName"] == workload["metadata"]["name"]
    assert differ["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    worker_images = {container(w)["image"] for w in (watcher, differ, notifier)}
    assert worker_images == {f"deltawatch/{w}:0.1.0" for w in ("watcher", "differ", "notifier")}
    budgets = {p["metadata"]["name"] for p in by_kind(objects, "PodDisruptionBudget")}
    assert budgets == {f"dw-deltawatch-{w}" for w in ("watcher", "differ", "notifier")}


def test_stable_ids_and_leader_election_from_the_pod_name(helm: Helm) -> None:
    objects = helm.template()
    for worker in ("differ", "notifier"):
        env = env_of(named(objects, "StatefulSet", f"dw-deltawatch-{worker}"))
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["DELTAWATCH_TRANSACTIONAL_ID"]["value"] == "$(POD_NAMESPACE).$(POD_NAME)"
    env = env_of(named(objects, "Deployment", "dw-deltawatch-watcher"))
    assert env["DELTAWATCH_WATCHER_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.name"
    )
    assert env["DELTAWATCH_LEADER_ELECTION"]["value"] == "true"
    assert env["DELTAWATCH_LEASE_NAME"]["value"] == "dw-deltawatch-watcher-default"
    assert env["DELTAWATCH_LEASE_NAMESPACE"]["value"] == "deltawatch"
    assert env["DELTAWATCH_LEASE_DURATION_S"]["value"] == "15"
    assert env["DELTAWATCH_LEASE_RENEW_DEADLINE_S"]["value"] == "10"
    assert env["DELTAWATCH_LEASE_RETRY_PERIOD_S"]["value"] == "2"


def test_every_worker_setting_is_reachable_as_a_value(helm: Helm) -> None:
    objects = helm.template(
        "--set",
        "watcher.kubeconfigSecret.name=remote",
        "--set",
        "schemaRegistryUrl=http://r:8081",
        "--set",
        "differ.changelogTopic=x.changelog",
        "--set",
        "differ.state.enabled=true",
        "--set",
        "notifier.groupId=g",
    )
    workloads = {
        WatcherSettings: named(objects, "Deployment", "dw-deltawatch-watcher"),
        DifferSettings: named(objects, "StatefulSet", "dw-deltawatch-differ"),
        NotifierSettings: named(objects, "StatefulSet", "dw-deltawatch-notifier"),
    }
    for settings, workload in workloads.items():
        missing = variables(settings) - set(env_of(workload))
        if settings is NotifierSettings:
            missing.discard("KUBECONFIG")  # in-cluster config: its own ServiceAccount
        assert not missing, f"{settings.__name__}: not settable from the chart: {sorted(missing)}"


def test_the_differ_state_on_a_volume_claim_per_replica(helm: Helm) -> None:
    plain = named(helm.template(), "StatefulSet", "dw-deltawatch-differ")
    assert "DELTAWATCH_DIFFER_STATE_DIR" not in env_of(plain)
    assert "volumeClaimTemplates" not in plain["spec"]
    differ = named(
        helm.template("--set", "differ.state.enabled=true", "--set", "differ.state.size=5Gi"),
        "StatefulSet",
        "dw-deltawatch-differ",
    )
    assert env_of(differ)["DELTAWATCH_DIFFER_STATE_DIR"]["value"] == "/var/lib/deltawatch"
    assert env_of(differ)["DELTAWATCH_DIFFER_STATE_CLEANUP_DELAY_S"]["value"] == "600"
    [claim] = differ["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container(differ)["volumeMounts"]}
    assert mounts["state"] == "/var/lib/deltawatch"


def test_the_secret_key_is_generated_once_or_taken_from_a_secret(helm: Helm) -> None:
    objects = helm.template()
    secret = named(objects, "Secret", "dw-deltawatch-secret-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    Fernet(decoded_secret_value(secret, "secret-key").encode())  # a usable Fernet key
    env = env_of(named(objects, "StatefulSet", "dw-deltawatch-notifier"))
    assert env["DELTAWATCH_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "dw-deltawatch-secret-key",
        "key": "secret-key",
    }
    own = helm.template("--set", "notifier.secretKey.existingSecret=mine")
    assert by_kind(own, "Secret") == []
    env = env_of(named(own, "StatefulSet", "dw-deltawatch-notifier"))
    assert env["DELTAWATCH_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mine"


def test_watcher_rbac_is_derived_from_the_kinds(helm: Helm) -> None:
    objects = helm.template(
        "--set-json",
        'watcher.resourceTypes=[{"apiVersion":"v1","kind":"ConfigMap"},'
        '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy"},'
        '{"apiVersion":"networking.k8s.io/v1","kind":"Ingress"},'
        '{"apiVersion":"example.com/v1","kind":"Widget","resource":"widgetz"}]',
    )
    role = named(objects, "ClusterRole", "dw-deltawatch-watcher-deltawatch")
    assert role["rules"] == [
        {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        {"apiGroups": ["example.com"], "resources": ["widgetz"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["ingresses", "networkpolicies"],
            "verbs": ["list", "watch"],
        },
    ]
    env = env_of(named(objects, "Deployment", "dw-deltawatch-watcher"))
    assert env["DELTAWATCH_RESOURCE_TYPES"]["value"] == (
        "v1/ConfigMap,networking.k8s.io/v1/NetworkPolicy,networking.k8s.io/v1/Ingress,"
        "example.com/v1/Widget"
    )
    lease = named(objects, "Role", "dw-deltawatch-watcher-lease")
    assert lease["metadata"]["namespace"] == "deltawatch"
    assert {"get", "update", "create"} == {v for r in lease["rules"] for v in r["verbs"]}


def test_namespaced_watcher_gets_a_role_per_namespace(helm: Helm) -> None:
    objects = helm.template("--set", "watcher.namespaces={shop,books}")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(objects, "Role")}
    assert {("shop", "dw-deltawatch-watcher"), ("books", "dw-deltawatch-watcher")} <= roles
    cluster_role = named(objects, "ClusterRole", "dw-deltawatch-watcher-deltawatch")
    assert cluster_role["rules"] == [
        {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*"], "verbs": ["get"]}
    ]


def test_notifier_auth_rbac_and_the_api_service(helm: Helm) -> None:
    objects = helm.template()
    env = env_of(named(objects, "StatefulSet", "dw-deltawatch-notifier"))
    assert env["DELTAWATCH_API_AUTH"]["value"] == "kubernetes"
    auth = named(objects, "ClusterRole", "dw-deltawatch-notifier-deltawatch-auth")
    assert auth["rules"] == [
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    clients = named(objects, "ClusterRole", "dw-deltawatch-deltawatch-api-client")
    assert clients["rules"][0]["apiGroups"] == ["deltawatch.io"]
    service = named(objects, "Service", "dw-deltawatch-notifier")
    assert service["spec"]["ports"][0]["port"] == 9103
    open_api = helm.template("--set", "notifier.api.auth=none")
    assert not [
        r for r in by_kind(open_api, "ClusterRole") if r["metadata"]["name"].endswith("auth")
    ]


def test_multi_cluster_example(helm: Helm) -> None:
    pipeline = helm.template("-f", str(EXAMPLES / "pipeline.yaml"), release="pipeline")
    assert {o["kind"] for o in pipeline} >= {"Deployment", "StatefulSet", "Secret"}
    for cluster in ("east", "west"):
        objects = helm.template(
            "-f", str(EXAMPLES / f"watcher-{cluster}.yaml"), release=f"watcher-{cluster}"
        )
        assert by_kind(objects, "StatefulSet") == []
        assert by_kind(objects, "ClusterRole") == []
        watcher = named(objects, "Deployment", f"watcher-{cluster}-deltawatch-watcher")
        env = env_of(watcher)
        assert env["DELTAWATCH_CLUSTER"]["value"] == cluster
        assert env["KUBECONFIG"]["value"] == "/etc/deltawatch/kubeconfig/kubeconfig"
        assert (
            env["DELTAWATCH_LEASE_NAME"]["value"]
            == f"watcher-{cluster}-deltawatch-watcher-{cluster}"
        )
        volumes = watcher["spec"]["template"]["spec"]["volumes"]
        assert {
            "name": "kubeconfig",
            "secret": {"secretName": f"kubeconfig-{cluster}", "defaultMode": 0o400},
        } in volumes


def test_optional_service_monitor_and_network_policy(helm: Helm) -> None:
    assert by_kind(helm.template(), "ServiceMonitor") == []
    assert by_kind(helm.template(), "NetworkPolicy") == []
    objects = helm.template(
        "--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true"
    )
    monitors = by_kind(objects, "ServiceMonitor")
    assert len(monitors) == 3
    metrics_services = [
        s
        for s in by_kind(objects, "Service")
        if s["metadata"]["labels"].get("deltawatch.io/metrics") == "true"
    ]
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= s["metadata"]["labels"].items() for s in metrics_services), (
            monitor["metadata"]["name"]
        )
    assert len(by_kind(objects, "NetworkPolicy")) == 3
