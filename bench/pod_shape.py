"""A realistic Kubernetes Pod for benchmarks: what a real kube-apiserver serves, per index.

Why: the differ's memory per tracked resource, measured at a million Pods, depends on how big
and how nested each body is; the ~1.3 KB synthetic Pod of ``differ_throughput.py`` is under
a quarter of a real one. This module gives the Pod a real API server returns, made distinct
per index the way a million real Pods are.

Where the shape comes from: ``data/pod.json`` is the answer to a GET from the kube-apiserver
the project builds itself (``deltawatch_tools.localkube``: Kubernetes v1.32.13 on etcd),
through the official ``kubernetes`` client (the raw JSON, no model round trip), with
``metadata.managedFields`` removed. Its spec is a Deployment-managed production Pod:
ownerReference to a ReplicaSet, ``pod-template-hash`` and app labels, the watcher's
``k8splugin.io/rb-instance-id`` label, three annotations, an init container (a database
migration) and two containers (the app and a fluent-bit sidecar), env from fieldRef and
secretKeyRef, a named port, requests/limits, liveness and readiness probes, the projected
service-account token volume mounted in every container (``kube-api-access-*``, written as
the ServiceAccount admission plugin would: the local server runs without it), pod and
container securityContext, nodeSelector, topology spread, ``spec.nodeName`` (no scheduler
runs). Its status is a kubelet's for a Running, Ready Pod (the five conditions, host and pod
IPs, startTime, qosClass, the init container terminated and both containers running with
image, imageID and containerID), written through the ``status`` subresource. Everything the
API server adds is as it added it: defaults (``terminationMessagePath``,
``imagePullPolicy``, probe ``scheme``/thresholds, ``dnsPolicy``, ``schedulerName``,
``serviceAccount``, ``priority``, ``enableServiceLinks``, ``preemptionPolicy``), the
not-ready/unreachable tolerations of the DefaultTolerationSeconds admission, ``uid``,
``resourceVersion``, ``creationTimestamp``.

Kept to the 3-6 KB the benchmark asked for (5,908 bytes of compact JSON): a v1.32 kubelet
would also report each container's ``volumeMounts`` in its status (~470 bytes more here),
and many production Pods carry more env, mounts and annotations (7-10 KB is common).

Regenerate it (starts a server of its own in a temporary directory, stops it after; ~10 s
once the binaries are built)::

    .venv/bin/python bench/pod_shape.py --regenerate

Use it::

    from bench.pod_shape import POD_JSON_BYTES, realistic_pod, realistic_pod_json
    pod = realistic_pod(12345)            # a new dict, distinct per index
    body = realistic_pod_json(12345)      # the same Pod as compact JSON bytes

Both fill the stored Pod's compact JSON in once per call (read from the file once per
process); ``realistic_pod`` then parses it with orjson. On the project's 2 shared CPUs:
~35 µs a ``realistic_pod``, ~17 µs a ``realistic_pod_json``. ``python bench/pod_shape.py``
prints the size and times both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from calendar import timegm
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

DATA_FILE = Path(__file__).resolve().parent / "data" / "pod.json"

Obj = dict[str, Any]
PathKeys = tuple[str | int, ...]

# Real generated names end in 5 characters of this alphabet (k8s.io/apimachinery's
# utilrand, no vowels); the index is written in it, so names stay distinct and real-shaped.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_UID_NAMESPACE = uuid.UUID("6f1c2a5e-4b1d-4e8a-9a57-0c0ffee0b0d5")
_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_PODS_PER_NODE = 110  # the kubelet's default maxPods
_BASE_RESOURCE_VERSION = 48_213_977


@dataclass(frozen=True)
class _Template:
    """The stored Pod as a %-format string of compact JSON, one ``%s`` per per-Pod value
    (each filled with a JSON literal), in the order of ``slots``."""

    compact: bytes
    format: str
    slots: tuple[str, ...]
    times: tuple[tuple[str, int], ...]  # each distinct "time<offset>" slot and its offset (s)
    containers: tuple[tuple[str, str], ...]  # each "containerID/<container>" slot, container
    created: int
    generate_name: str
    node_domain: str
    runtime: str
    instance: str

    @property
    def pick(self) -> Callable[[dict[str, str]], tuple[str, ...]]:
        return itemgetter(*self.slots)


def _walk(node: Any, path: PathKeys = ()) -> Iterator[tuple[PathKeys, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def _epoch(stamp: str) -> int:
    return timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def _slot(pod: Obj, path: PathKeys, value: Any, created: int) -> str | None:
    """The per-Pod value at ``path``, by name (one name for every copy of the same value)."""
    fixed = {
        ("metadata", "name"): "name",
        ("metadata", "namespace"): "namespace",
        ("metadata", "uid"): "uid",
        ("metadata", "resourceVersion"): "resourceVersion",
        ("metadata", "labels", "k8splugin.io/rb-instance-id"): "instance",
        ("spec", "nodeName"): "nodeName",
        ("status", "podIP"): "podIP",
        ("status", "podIPs", 0, "ip"): "podIP",
        ("status", "hostIP"): "hostIP",
        ("status", "hostIPs", 0, "ip"): "hostIP",
    }
    if path in fixed:
        return fixed[path]
    if path[:2] == ("metadata", "annotations"):
        return None  # restartedAt is the Deployment's, not the Pod's
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        return f"time{_epoch(value) - created:+d}"
    if path[-1:] == ("containerID",):
        # ("status", "containerStatuses", i, ...): also in state.terminated
        return f"containerID/{pod['status'][path[1]][path[2]]['name']}"
    return None


@cache
def _template() -> _Template:
    """Read ``data/pod.json`` once and mark where its per-Pod values sit."""
    pod: Obj = orjson.loads(DATA_FILE.read_bytes())
    metadata = pod["metadata"]
    created = _epoch(metadata["creationTimestamp"])
    marked: Obj = orjson.loads(orjson.dumps(pod))
    for path, value in _walk(pod):
        name = _slot(pod, path, value, created)
        if name is not None:
            node: Any = marked
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = f"@@{name}@@"
    pieces = re.split(r'"@@([^@]+)@@"', orjson.dumps(marked).decode())
    slots = tuple(pieces[1::2])
    return _Template(
        compact=orjson.dumps(pod),
        format="%s".join(piece.replace("%", "%%") for piece in pieces[::2]),
        slots=slots,
        times=tuple((slot, int(slot[4:])) for slot in dict.fromkeys(slots) if slot[:4] == "time"),
        containers=tuple(
            (slot, slot.split("/", 1)[1])
            for slot in dict.fromkeys(slots)
            if slot.startswith("containerID/")
        ),
        created=created,
        generate_name=metadata["generateName"],
        node_domain=pod["spec"]["nodeName"].split(".", 1)[1],
        runtime=pod["status"]["containerStatuses"][0]["containerID"].split("://")[0],
        instance=metadata["labels"]["k8splugin.io/rb-instance-id"],
    )


def pod_json_bytes() -> int:
    """Compact JSON size of the stored Pod; a ``realistic_pod`` differs by a few bytes at most
    (IP addresses, node name and resourceVersion vary in length)."""
    return len(_template().compact)


def __getattr__(name: str) -> Any:
    # POD_JSON_BYTES reads data/pod.json on first use, so that --regenerate runs without it.
    if name == "POD_JSON_BYTES":
        return pod_json_bytes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _name_suffix(index: int) -> str:
    digits = []
    while True:
        index, digit = divmod(index, len(_NAME_ALPHABET))
        digits.append(_NAME_ALPHABET[digit])
        if not index:
            break
    return "".join(reversed(digits)).rjust(5, _NAME_ALPHABET[0])


def _ipv4(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _uid(index: int) -> str:
    h = hashlib.sha256(b"pod-shape/%d" % index).hexdigest()
    return f'"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"'


_STAMPS: dict[int, str] = {}


def _stamp_json(epoch: int) -> str:
    """``epoch`` as a JSON RFC 3339 string; cached, as consecutive indices share most times."""
    stamp = _STAMPS.get(epoch)
    if stamp is None:
        if len(_STAMPS) >= 4096:
            _STAMPS.clear()
        stamp = _STAMPS[epoch] = time.strftime('"%Y-%m-%dT%H:%M:%SZ"', time.gmtime(epoch))
    return stamp


def _json_string(value: str) -> str:
    return orjson.dumps(value).decode()


def realistic_pod(index: int, namespace: str = "bench", *, instance: str | None = None) -> Obj:
    """A new Pod dict shaped like ``data/pod.json``, distinct per ``index`` (>= 0).

    Per index: name (the ReplicaSet's generateName and a 5-character suffix), uid (a UUID
    derived from the index), resourceVersion, creationTimestamp and every status time (one
    second apart per index, same offsets as the template), podIP(s) (100.64.0.0/10, distinct
    up to 4 Mi indices), the node (110 Pods per node: nodeName and hostIP(s) agree) and the
    containerIDs. ``namespace`` sets metadata.namespace; ``instance`` the
    ``k8splugin.io/rb-instance-id`` label the watcher groups by (the template's otherwise).

    Parsed from ``realistic_pod_json`` by orjson, so every value is a new object, as when the
    watcher or differ parses a real body.
    """
    pod: Obj = orjson.loads(_filled(index, namespace, instance))
    return pod


def realistic_pod_json(
    index: int, namespace: str = "bench", *, instance: str | None = None
) -> bytes:
    """``orjson.dumps(realistic_pod(...))``, byte for byte, without building the dict: the
    template's compact JSON with the per-index values put in (a few times faster)."""
    return _filled(index, namespace, instance).encode()


def _filled(index: int, namespace: str, instance: str | None) -> str:
    if index < 0:
        raise ValueError(f"index must be >= 0, not {index}")
    template = _template()
    name = template.generate_name + _name_suffix(index)
    host_ip = _ipv4((10 << 24) | (1 << 16) | (index // _PODS_PER_NODE))
    values = {
        "name": f'"{name}"',
        "namespace": _json_string(namespace),
        "uid": _uid(index),
        "resourceVersion": f'"{_BASE_RESOURCE_VERSION + index}"',
        "instance": _json_string(template.instance if instance is None else instance),
        "nodeName": f'"ip-{host_ip.replace(".", "-")}.{template.node_domain}"',
        "podIP": f'"{_ipv4((100 << 24) | (64 << 16) | (index & 0x3FFFFF))}"',
        "hostIP": f'"{host_ip}"',
    }
    start = template.created + index
    for slot, offset in template.times:
        values[slot] = _stamp_json(start + offset)
    for slot, container in template.containers:
        digest = hashlib.sha256(f"{namespace}/{name}/{container}".encode()).hexdigest()
        values[slot] = f'"{template.runtime}://{digest}"'
    filled: str = template.format % template.pick(values)
    return filled


def compact_size(pod: Obj) -> int:
    """Bytes of ``pod`` as compact JSON (what the watcher forwards)."""
    return len(orjson.dumps(pod))


# -- regenerating data/pod.json against the real API server ---------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_APP = "checkout"
_RS_HASH = "7c9d8f6b5d"
_NODE = "ip-10-1-0-17.eu-west-1.compute.internal"
_SA_VOLUME = "kube-api-access-x7k2q"
# The migration runs the app's own image; as the runtime reports it (Docker Hub in full).
_IMAGES = {
    "migrate": "ghcr.io/acme/checkout:2.41.3",
    _APP: "ghcr.io/acme/checkout:2.41.3",
    "fluent-bit": "docker.io/fluent/fluent-bit:3.1.9",
}


def _env(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def _field_env(name: str, field_path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def _secret_env(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _sa_mount() -> Obj:
    return {
        "name": _SA_VOLUME,
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }


def _restricted() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _containers() -> tuple[list[Obj], list[Obj]]:
    """(initContainers, containers) of the manifest."""
    migrate = {
        "name": "migrate",
        "image": _IMAGES["migrate"],
        "args": ["migrate"],
        "env": [_secret_env("DATABASE_URL", "checkout-db", "url")],
        "volumeMounts": [_sa_mount()],
    }
    http_probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    app = {
        "name": _APP,
        "image": _IMAGES[_APP],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _env("LOG_LEVEL", "info"),
            _secret_env("DATABASE_URL", "checkout-db", "url"),
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "livenessProbe": {**http_probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
        },
        "volumeMounts": [
            _sa_mount(),
        ],
        "securityContext": _restricted(),
    }
    logs = {
        "name": "fluent-bit",
        "image": "fluent/fluent-bit:3.1.9",  # the runtime reports it as in _IMAGES
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}},
        "volumeMounts": [_sa_mount()],
    }
    return [migrate], [app, logs]


def _volumes() -> list[Obj]:
    token_sources = [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {
            "downwardAPI": {
                "items": [
                    {
                        "path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                    }
                ]
            }
        },
    ]
    return [
        {"name": _SA_VOLUME, "projected": {"defaultMode": 420, "sources": token_sources}},
    ]


def _manifest(namespace: str) -> Obj:
    selector = {"app": _APP}
    init_containers, containers = _containers()
    spread = {
        "maxSkew": 1,
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{_APP}-{_RS_HASH}-x2k4q",
            "generateName": f"{_APP}-{_RS_HASH}-",
            "namespace": namespace,
            "labels": {
                **selector,
                "pod-template-hash": _RS_HASH,
                "k8splugin.io/rb-instance-id": "payments-prod-eu1",
            },
            "annotations": {
                "kubectl.kubernetes.io/default-container": _APP,
                # A `kubectl rollout restart` of the Deployment, three hours before.
                "kubectl.kubernetes.io/restartedAt": _stamp(int(time.time()), -3 * 3600),
                "prometheus.io/scrape": "true",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{_APP}-{_RS_HASH}",
                    "uid": str(uuid.uuid5(_UID_NAMESPACE, "replicaset")),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "nodeName": _NODE,
            "serviceAccountName": _APP,
            "terminationGracePeriodSeconds": 45,
            "priorityClassName": "",
            "securityContext": {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "initContainers": init_containers,
            "containers": containers,
            "volumes": _volumes(),
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "topologySpreadConstraints": [
                {**spread, "topologyKey": "topology.kubernetes.io/zone"},
            ],
        },
    }


def _stamp(created: int, offset: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + offset))


def _container_status(name: str, **state: Any) -> Obj:
    image = _IMAGES[name]
    repo = image.rsplit(":", 1)[0]
    return {
        "name": name,
        "image": image,
        "imageID": f"{repo}@sha256:{_digest(image)}",
        "containerID": f"containerd://{_digest(name + '/container')}",
        "state": state,
        "lastState": {},
        "ready": "terminated" not in state,
        "restartCount": 0,
        "started": "terminated" not in state,
    }


def _status(pod: Obj) -> Obj:
    """What a kubelet reports for the Pod once Running and Ready."""
    created = _epoch(pod["metadata"]["creationTimestamp"])
    spec = pod["spec"]

    def condition(kind: str, offset: int) -> Obj:
        return {
            "type": kind,
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": _stamp(created, offset),
        }

    init = spec["initContainers"][0]
    terminated = {
        "exitCode": 0,
        "reason": "Completed",
        "startedAt": _stamp(created, 3),
        "finishedAt": _stamp(created, 11),
        "containerID": f"containerd://{_digest(init['name'] + '/container')}",
    }
    running = {"startedAt": _stamp(created, 12)}
    return {
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", 3),
            condition("Initialized", 12),
            condition("Ready", 27),
            condition("ContainersReady", 27),
            condition("PodScheduled", 0),
        ],
        "hostIP": "10.1.0.17",
        "hostIPs": [{"ip": "10.1.0.17"}],
        "podIP": "100.64.7.203",
        "podIPs": [{"ip": "100.64.7.203"}],
        "startTime": _stamp(created, 1),
        "initContainerStatuses": [_container_status(init["name"], terminated=terminated)],
        "containerStatuses": [
            _container_status(c["name"], running=running) for c in spec["containers"]
        ],
        "qosClass": "Burstable",
    }


def regenerate(path: Path = DATA_FILE) -> Obj:
    """Create the Pod on a fresh local API server, write its status, GET it, save it."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from deltawatch_tools.localkube import KubeOptions, LocalKubeServer, ops

    state_dir = Path(tempfile.mkdtemp(prefix="pod-shape-kube-"))
    server = LocalKubeServer(state_dir)
    try:
        server.ensure_running(KubeOptions())
        with server.api_client() as api:
            version = ops.request(api, "GET", "/version")
            print(f"kube-apiserver {version['gitVersion']}", file=sys.stderr)
            namespace = "payments"
            ops.create_namespace(api, namespace)
            pod = ops.create(api, _manifest(namespace))
            ops.patch_status(api, pod, _status(pod))
            served = ops.get(api, pod)
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
    served["metadata"].pop("managedFields", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(served, indent=2) + "\n")
    return served


def pod_event(
    event_type: str, instance: str, pod: Obj, text: str, observed_at: Any
) -> dict[str, Any]:
    """A ``resource-event.avsc`` record of ``pod`` (its JSON ``text``) as the watcher writes
    it, cluster ``bench``: the one record shape the differ benchmarks feed."""
    metadata: dict[str, Any] = pod["metadata"]
    return {
        "type": event_type,
        "cluster": "bench",
        "instance_id": instance,
        "group": "",
        "version": "v1",
        "kind": "Pod",
        "namespace": metadata["namespace"],
        "name": metadata["name"],
        "uid": metadata["uid"],
        "resource_version": metadata["resourceVersion"],
        "observed_at": observed_at,
        "list_id": None,
        "list_reason": None,
        "object": text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--regenerate", action="store_true", help="rebuild data/pod.json")
    parser.add_argument("--time", type=int, default=100_000, help="time N realistic_pod calls")
    args = parser.parse_args()
    if args.regenerate:
        served = regenerate()
        print(f"{DATA_FILE}: {compact_size(served)} bytes of compact JSON")
        return
    print(f"POD_JSON_BYTES = {pod_json_bytes()}")
    for function in (realistic_pod, realistic_pod_json):
        began = time.perf_counter()
        for i in range(args.time):
            function(i)
        elapsed = time.perf_counter() - began
        each_us = elapsed / args.time * 1e6
        print(f"{args.time} {function.__name__} calls: {elapsed:.2f} s ({each_us:.1f} µs each)")


if __name__ == "__main__":
    main()
