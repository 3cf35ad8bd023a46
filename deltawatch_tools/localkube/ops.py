"""Dict-in, dict-out Kubernetes calls for tests and the demo, through the official client.

Why not the typed API classes: deltawatch watches arbitrary kinds as raw JSON, and its tests
must see exactly what the server sent, not a model round-trip that drops unknown fields. And
no controller runs on the local server, so a test or the demo plays every step of a story
itself (create a Deployment, its ReplicaSet, its Pods, move each Pod's status along, delete
them) over several kinds. So every call here takes and returns plain dicts, finds a kind's
plural through discovery (once per client, no hand-kept table), and goes through
``kubernetes.client.ApiClient`` for authentication and TLS.

Most calls take the object itself (a dict with apiVersion, kind, metadata.name and, for
namespaced kinds, metadata.namespace), so a story reads ``pod = create(api, manifest)``,
``pod = patch_status(api, pod, {"phase": "Running"})``, ``delete(api, pod)``.

``watch_events`` is a deliberately plain stream reader for tests that check what the server
does (BOOKMARK, ERROR 410, closing a watch); the watcher service has its own.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

Obj = dict[str, Any]
PatchType = Literal["merge", "strategic", "json"]
T = TypeVar("T")

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


@dataclass(frozen=True)
class Resource:
    """A kind as the API serves it: where it lives and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = prefix
        if self.namespaced and namespace is not None:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


_discovered: weakref.WeakKeyDictionary[ApiClient, dict[str, dict[str, Resource]]] = (
    weakref.WeakKeyDictionary()
)


def resource(api: ApiClient, api_version: str, kind: str) -> Resource:
    """Look ``kind`` up in the discovery document of ``api_version`` (cached per client)."""
    per_client = _discovered.setdefault(api, {})
    kinds = per_client.get(api_version)
    if kinds is None:
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        document = request(api, "GET", prefix)
        kinds = {
            entry["kind"]: Resource(
                api_version, entry["kind"], entry["name"], bool(entry["namespaced"])
            )
            for entry in document["resources"]
            if "/" not in entry["name"]  # subresources such as pods/status
        }
        per_client[api_version] = kinds
    try:
        return kinds[kind]
    except KeyError:
        raise LookupError(f"the server has no kind {kind!r} in {api_version}") from None


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | int | bool] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> Any:
    """One HTTP call; the decoded JSON reply, or ``ApiException`` for a non-2xx status."""
    response = _send(api, method, path, query, body, content_type, timeout)
    data: bytes = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(
            http_resp=response, body=data.decode(errors="replace"), data=None
        )
    return json.loads(data) if data else None


def _send(
    api: ApiClient,
    method: str,
    path: str,
    query: Mapping[str, str | int | bool] | None,
    body: Any,
    content_type: str,
    timeout: float | tuple[float, float | None],
) -> Any:
    params = [(k, _query_value(v)) for k, v in (query or {}).items()]
    method, url, headers, body, post = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=params or None,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    return api.call_api(method, url, headers, body, post, _request_timeout=timeout)


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _locate(api: ApiClient, obj: Mapping[str, Any]) -> tuple[Resource, str | None, str]:
    res = resource(api, obj["apiVersion"], obj["kind"])
    metadata = obj.get("metadata", {})
    namespace = metadata.get("namespace") if res.namespaced else None
    if res.namespaced and not namespace:
        raise ValueError(f"{obj['kind']} {metadata.get('name')!r} needs metadata.namespace")
    return res, namespace, metadata["name"]


# -- single objects -------------------------------------------------------------------------


def create(api: ApiClient, obj: Mapping[str, Any]) -> Obj:
    """POST ``obj``; return the object as stored (with uid, resourceVersion, ...)."""
    res = resource(api, obj["apiVersion"], obj["kind"])
    namespace = obj.get("metadata", {}).get("namespace") if res.namespaced else None
    if res.namespaced and not namespace:
        raise ValueError(f"{obj['kind']} needs metadata.namespace")
    created: Obj = request(api, "POST", res.path(namespace), body=dict(obj))
    return created


def get(api: ApiClient, obj: Mapping[str, Any]) -> Obj:
    """Re-read ``obj`` (only apiVersion, kind, name and namespace are used)."""
    res, namespace, name = _locate(api, obj)
    current: Obj = request(api, "GET", res.path(namespace, name))
    return current


def update(api: ApiClient, obj: Mapping[str, Any]) -> Obj:
    """PUT ``obj``. With metadata.resourceVersion set, a stale update fails with 409."""
    res, namespace, name = _locate(api, obj)
    updated: Obj = request(api, "PUT", res.path(namespace, name), body=dict(obj))
    return updated


def patch(
    api: ApiClient,
    obj: Mapping[str, Any],
    body: Any,
    *,
    patch_type: PatchType = "merge",
    subresource: str | None = None,
) -> Obj:
    """PATCH ``obj`` (or one of its subresources) with a merge, strategic or JSON patch."""
    res, namespace, name = _locate(api, obj)
    patched: Obj = request(
        api,
        "PATCH",
        res.path(namespace, name, subresource),
        body=body,
        content_type=_PATCH_CONTENT_TYPES[patch_type],
    )
    return patched


def patch_status(
    api: ApiClient,
    obj: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    patch_type: PatchType = "merge",
) -> Obj:
    """Merge ``status`` into the object's status through the ``status`` subresource.

    This is what a kubelet or controller would do; nothing else on the local server will.
    A merge patch replaces lists (such as ``conditions``) as a whole.
    """
    return patch(api, obj, {"status": dict(status)}, patch_type=patch_type, subresource="status")


def delete(
    api: ApiClient,
    obj: Mapping[str, Any],
    *,
    grace_period_seconds: int | None = 0,
    missing_ok: bool = False,
) -> None:
    """DELETE ``obj``; by default at once, since no kubelet will confirm a graceful delete."""
    res, namespace, name = _locate(api, obj)
    query: dict[str, str | int | bool] = {}
    if grace_period_seconds is not None:
        query["gracePeriodSeconds"] = grace_period_seconds
    try:
        request(api, "DELETE", res.path(namespace, name), query=query)
    except ApiException as exc:
        if not (missing_ok and exc.status == 404):
            raise


# -- collections ----------------------------------------------------------------------------


def list_objects(
    api: ApiClient,
    api_version: str,
    kind: str,
    namespace: str | None = None,
    *,
    limit: int | None = None,
    continue_token: str | None = None,
    label_selector: str | None = None,
    resource_version: str | None = None,
) -> Obj:
    """One LIST page: the whole ``...List`` object, with ``metadata.continue`` if more."""
    query: dict[str, str | int | bool] = {}
    if limit is not None:
        query["limit"] = limit
    if continue_token:
        query["continue"] = continue_token
    if label_selector:
        query["labelSelector"] = label_selector
    if resource_version is not None:
        query["resourceVersion"] = resource_version
    page: Obj = request(api, "GET", resource(api, api_version, kind).path(namespace), query=query)
    return page


def watch_events(
    api: ApiClient,
    api_version: str,
    kind: str,
    namespace: str | None = None,
    *,
    resource_version: str | None = None,
    allow_bookmarks: bool = False,
    timeout_seconds: int | None = 10,
    label_selector: str | None = None,
) -> Iterator[Obj]:
    """Yield each watch event (``{"type": ..., "object": ...}``) as the server sends it.

    ``ERROR`` events are yielded, not raised, so a test can look at them (code 410 is "Gone").
    The stream ends when the server closes it: after ``timeout_seconds`` (None: a random
    time between ``--min-request-timeout`` and twice it), or when kube-apiserver stops.
    An HTTP error before the stream starts raises ``ApiException``.
    """
    query: dict[str, str | int | bool] = {"watch": True}
    if timeout_seconds is not None:
        query["timeoutSeconds"] = timeout_seconds
    if resource_version is not None:
        query["resourceVersion"] = resource_version
    if allow_bookmarks:
        query["allowWatchBookmarks"] = True
    if label_selector:
        query["labelSelector"] = label_selector
    path = resource(api, api_version, kind).path(namespace)
    # Connect timeout only: a quiet watch may legitimately send nothing for minutes.
    response = _send(api, "GET", path, query, None, "application/json", (10.0, None))
    if not 200 <= response.status <= 299:
        data = response.read()
        raise ApiException.from_response(
            http_resp=response, body=data.decode(errors="replace"), data=None
        )
    raw = response.response  # the urllib3 response, not yet read
    buffer = b""
    try:
        for chunk in raw.stream(amt=None, decode_content=True):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    event: Obj = json.loads(line)
                    yield event
    finally:
        raw.release_conn()


# -- namespaces -----------------------------------------------------------------------------


def create_namespace(api: ApiClient, name: str, labels: Mapping[str, str] | None = None) -> Obj:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    return create(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


def delete_namespace(api: ApiClient, name: str) -> None:
    """Delete a namespace. Without the namespace controller it stays Terminating for ever,
    with its contents: tests should watch their own namespace, not the whole cluster."""
    delete(
        api,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        grace_period_seconds=None,
        missing_ok=True,
    )


# -- waiting --------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; return that. Bounded by
    ``timeout``: raises ``TimeoutError`` naming ``what``. The way to wait in tests instead of
    a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
