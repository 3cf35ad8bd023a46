"""The ground truth: a seeded stream of changes to labelled objects, and the state it left.

Why ConfigMaps and Pods: no controller runs on the local API server, so every change here is
exactly one the driver made. ConfigMaps change cheaply (create, data edits, delete, re-create
under the same name with a new uid); Pods add a second kind whose *status* moves through
the status subresource, as a kubelet would move it. Every change writes a fresh counter
value, so no change is a no-op the differ could rightly skip.

The truth at the end is read back from the API server (not from the driver's own model),
so the oracle compares against what the cluster really holds. The driver also keeps the
:class:`History` of every version it made (from the API server's answers) and every uid it
deleted, labelled with its ``cluster`` name, for the oracle's spurious-change check.

Many clusters (CONTRACT §10): one driver per API server, each with the cluster name its
watcher has (``DELTAWATCH_CLUSTER``). Drivers given the same instances and namespace make
objects of the same names in every cluster, so a pipeline that mixed the clusters up would
show as a lost, stale, wrong or spurious object.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from deltawatch_tools.localkube import ops
from tests.reliability.oracle import History, Obj, ObjectKey, object_key

INSTANCE_LABEL = "k8splugin.io/rb-instance-id"
# what the driver changes, hence what the oracle compares
COMPARED_FIELDS = ("data", "status.phase", "status.conditions", "metadata.uid")
KINDS = (("v1", "ConfigMap"), ("v1", "Pod"))


@dataclass
class ClusterDriver:
    api: ApiClient
    namespace: str
    instances: list[str]
    seed: int
    names_per_instance: int = 6
    cluster: str = "default"
    """The cluster's name, as its watcher's ``DELTAWATCH_CLUSTER`` (the default's name)."""
    live: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    history: History = field(default_factory=History)
    log: list[dict[str, Any]] = field(default_factory=list)
    """Every change as made: what, to which object, the uid and resourceVersion answered."""
    changes: int = 0
    retried: int = 0

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self._last_slot: tuple[str, str, str] = ("", "", "")
        self._last_deleted: Obj = {}

    def _manifest(self, instance: str, kind: str, name: str) -> Obj:
        meta = {"name": name, "namespace": self.namespace, "labels": {INSTANCE_LABEL: instance}}
        if kind == "ConfigMap":
            return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"n": "0"}}
        return {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
        }

    def step(self) -> str:
        """Make one change (a create, an edit or a delete) and say what it was."""
        began = time.time()
        done = self._step()
        what, _, name = done.partition(" ")
        obj = self.live.get(self._last_slot) or self._last_deleted
        meta = obj.get("metadata") or {}
        self.log.append(
            {
                "at": began,
                "cluster": self.cluster,
                "change": what,
                "object": name,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion") if what != "delete" else None,
            }
        )
        return done

    def _step(self) -> str:
        instance = self.random.choice(self.instances)
        kind = "Pod" if self.random.random() < 0.25 else "ConfigMap"
        name = f"{instance}-{kind.lower()}-{self.random.randrange(self.names_per_instance)}"
        slot = (instance, kind, name)
        self._last_slot, self._last_deleted = slot, {}
        current = self.live.get(slot)
        self.changes += 1
        value = str(self.changes)
        key = (self.cluster, kind, self.namespace, name)
        if current is None:
            self.live[slot] = self._call(ops.create, self._manifest(instance, kind, name))
            self.history.saw(key, self.live[slot])
            return f"create {kind}/{name}"
        if self.random.random() < 0.2:
            self._call(ops.delete, current)
            self.history.saw_deleted(key, current)
            self._last_deleted = current
            del self.live[slot]
            return f"delete {kind}/{name}"
        if kind == "ConfigMap":
            self.live[slot] = self._call(ops.patch, current, {"data": {"n": value}})
        else:
            status = {
                "phase": self.random.choice(["Pending", "Running", "Failed"]),
                "conditions": [{"type": "Ready", "status": "True", "reason": f"r{value}"}],
            }
            self.live[slot] = self._call(ops.patch_status, current, status)
        self.history.saw(key, self.live[slot])
        return f"edit {kind}/{name}"

    def _call(self, operation: Callable[..., Obj | None], *args: Any) -> Obj:
        """Retry through an API server restart. A change whose answer was lost may already
        be done: a repeated create then finds the object (409), a repeated delete finds it
        gone (404), a repeated patch writes the same value again."""
        for attempt in range(300):
            try:
                return operation(self.api, *args) or {}
            except ApiException as exc:
                if exc.status == 409 and operation is ops.create:
                    return ops.get(self.api, args[0])
                if exc.status == 404 and operation is ops.delete:
                    return {}
                if exc.status is not None and 0 < exc.status < 500:
                    raise
            except (OSError, urllib3.exceptions.HTTPError):
                pass  # refused / reset while kube-apiserver restarts
            self.retried += 1
            time.sleep(min(0.05 * (attempt + 1), 0.5))  # backoff between attempts, not a sync
        raise RuntimeError(f"{operation.__name__} kept failing")

    def truth(self, instance: str) -> dict[ObjectKey, Obj]:
        """The instance's objects as the API server holds them now."""
        found: dict[ObjectKey, Obj] = {}
        for api_version, kind in KINDS:
            page = ops.list_objects(
                self.api,
                api_version,
                kind,
                self.namespace,
                label_selector=f"{INSTANCE_LABEL}={instance}",
            )
            for item in page["items"]:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api_version)
                found[object_key(item, self.cluster)] = item
        return found


def steps(driver: ClusterDriver, count: int) -> Iterator[str]:
    for _ in range(count):
        yield driver.step()
