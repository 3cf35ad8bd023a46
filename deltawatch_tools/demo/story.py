"""A short, realistic life of one instance, played on an API server where no controller runs.

On the local server nothing creates ReplicaSets or Pods or moves their status, so the story
does what the Deployment controller, the ReplicaSet controller and the kubelet would do, step
by step, through the official client. Every object carries the instance label, which is what
makes it part of the instance the subscription watches.

Each step is a named function of :class:`InstanceStory`, so the end-to-end tests can play the
same steps and know what the subscriber must have been told.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient

from deltawatch_tools.localkube import ops

Obj = dict[str, Any]


def _pod_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class InstanceStory:
    api: ApiClient
    namespace: str
    instance_id: str
    label: str = "k8splugin.io/rb-instance-id"
    app: str = "web"
    objects: dict[str, Obj] = field(default_factory=dict)
    pods: list[str] = field(default_factory=list)
    restarts: int = 0

    # -- building blocks ------------------------------------------------------------------
    @property
    def labels(self) -> dict[str, str]:
        return {self.label: self.instance_id, "app": self.app}

    @property
    def replicaset_name(self) -> str:
        return f"{self.app}-{_pod_hash(self.instance_id)}"

    def _meta(self, name: str, **extra: Any) -> Obj:
        return {"name": name, "namespace": self.namespace, "labels": dict(self.labels), **extra}

    def _keep(self, obj: Obj) -> Obj:
        self.objects[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
        return obj

    def _status(self, key: str, status: Obj) -> None:
        self.objects[key] = ops.patch_status(self.api, self.objects[key], status)

    def _scale_status(self) -> None:
        ready = len(self.pods)
        replica_status = {"replicas": ready, "readyReplicas": ready, "availableReplicas": ready}
        self._status(f"Deployment/{self.app}", {**replica_status, "updatedReplicas": ready})
        self._status(f"ReplicaSet/{self.replicaset_name}", replica_status)

    def _set_replicas(self, replicas: int) -> None:
        for key in (f"Deployment/{self.app}", f"ReplicaSet/{self.replicaset_name}"):
            self.objects[key] = ops.patch(
                self.api, self.objects[key], {"spec": {"replicas": replicas}}
            )

    def _container(self) -> Obj:
        return {"name": self.app, "image": "nginx:1.27", "ports": [{"containerPort": 80}]}

    def _add_pod(self) -> str:
        name = f"{self.replicaset_name}-{_pod_hash(f'{self.instance_id}/{len(self.pods)}')[:5]}"
        self._keep(
            ops.create(
                self.api,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": self._meta(name),
                    "spec": {"containers": [self._container()]},
                },
            )
        )
        self.pods.append(name)
        self._status(f"Pod/{name}", self._running_status())
        return name

    def _running_status(self, restarts: int = 0) -> Obj:
        return {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": self.app,
                    "ready": True,
                    "restartCount": restarts,
                    "image": "nginx:1.27",
                    "imageID": "",
                    "state": {"running": {"startedAt": "2026-11-24T10:00:00Z"}},
                }
            ],
        }

    # -- the story ------------------------------------------------------------------------
    def seed(self, replicas: int = 2) -> None:
        """The instance as it exists before anyone subscribes."""
        selector = {"matchLabels": {"app": self.app, self.label: self.instance_id}}
        template = {
            "metadata": {"labels": dict(self.labels)},
            "spec": {"containers": [self._container()]},
        }
        self._keep(
            ops.create(
                self.api,
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": self._meta(self.app),
                    "spec": {"replicas": replicas, "selector": selector, "template": template},
                },
            )
        )
        self._keep(
            ops.create(
                self.api,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": self._meta(self.replicaset_name),
                    "spec": {"replicas": replicas, "selector": selector, "template": template},
                },
            )
        )
        self._keep(
            ops.create(
                self.api,
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": self._meta(self.app),
                    "spec": {
                        "selector": {"app": self.app},
                        "ports": [{"port": 80, "targetPort": 80}],
                    },
                },
            )
        )
        self._keep(
            ops.create(
                self.api,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": self._meta(f"{self.app}-config"),
                    "data": {"LOG_LEVEL": "info", "WORKERS": "2"},
                },
            )
        )
        for _ in range(replicas):
            self._add_pod()
        self._scale_status()

    def scale_up(self) -> str:
        self._set_replicas(len(self.pods) + 1)
        name = self._add_pod()
        self._scale_status()
        return name

    def crash_loop(self, crashes: int = 3) -> str:
        """The last pod's container keeps failing: restarts climb, it goes CrashLoopBackOff."""
        name = self.pods[-1]
        for _ in range(crashes):
            self.restarts += 1
            self._status(
                f"Pod/{name}",
                {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        {
                            "name": self.app,
                            "ready": False,
                            "restartCount": self.restarts,
                            "image": "nginx:1.27",
                            "imageID": "",
                            "state": {
                                "waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}
                            },
                            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                        }
                    ],
                },
            )
        return name

    def change_config(self) -> None:
        key = f"ConfigMap/{self.app}-config"
        self.objects[key] = ops.patch(self.api, self.objects[key], {"data": {"LOG_LEVEL": "debug"}})

    def scale_down(self) -> str:
        name = self.pods.pop()
        ops.delete(self.api, self.objects.pop(f"Pod/{name}"))
        self._set_replicas(len(self.pods))
        self._scale_status()
        return name

    def delete_all(self) -> None:
        for key in list(self.objects):
            ops.delete(self.api, self.objects.pop(key), missing_ok=True)
        self.pods.clear()

    def steps(self) -> list[tuple[str, Callable[[], object]]]:
        return [
            ("scale up to 3 replicas", self.scale_up),
            ("a pod crash-loops", self.crash_loop),
            ("config change: LOG_LEVEL=debug", self.change_config),
            ("scale down to 2 replicas", self.scale_down),
            ("delete the instance", self.delete_all),
        ]

    def live_names(self) -> set[str]:
        return {key for key in self.objects}
