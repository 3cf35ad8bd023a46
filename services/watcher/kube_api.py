"""The watcher's one adapter to the Kubernetes API: discovery, LIST pages, WATCH streams.

It speaks raw JSON over ``kubernetes.client.ApiClient`` (which brings kubeconfig, in-cluster
config, TLS and token refresh) instead of the typed or dynamic clients, because the watcher
handles any kind, CRDs included, must pass objects unchanged (no model round trip), and must
read watch streams itself (``_preload_content=False``): a typed client's line reader cannot
take a multi-megabyte object. HTTP failures are turned into the three outcomes the list/watch
loop cares about: the resourceVersion or continue token expired (410), the kind is not served
(yet), or anything else (retry).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from services.watcher.kinds import WatchTarget
from services.watcher.lines import split_lines

Obj = dict[str, Any]
CONNECT_TIMEOUT_S = 10.0
LIST_TIMEOUT_S = 60.0
STREAM_CHUNK_BYTES = 256 * 1024
DEFAULT_SILENCE_S = 300


class KubeError(Exception):
    """A call failed in a way worth retrying (connection, 5xx, 429 …)."""


class ResourceExpired(KubeError):
    """410 Gone / Expired: the resourceVersion or continue token is too old; relist."""


class AccessDenied(KubeError):
    """401 / 403: the watcher's credentials may not do this; retrying soon will not help."""


class KindNotServed(KubeError):
    """Discovery does not (yet) know the kind: its CRD may not exist yet."""


def api_client(kubeconfig: str | None) -> ApiClient:
    """``KUBECONFIG`` when set, else in-cluster config, else ``~/.kube/config`` (CONTRACT §2)."""
    client: ApiClient
    if kubeconfig:
        client = kube_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return client
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return ApiClient()
    except kube_config.ConfigException:
        client = kube_config.new_client_from_config()  # type: ignore[no-untyped-call]
        return client


@dataclass(frozen=True)
class ServedKind:
    """Where the API serves a kind, found by discovery."""

    target: WatchTarget
    plural: str
    namespaced: bool

    def collection_path(self) -> str:
        prefix = f"/apis/{self.target.api_version}" if self.target.group else "/api/v1"
        if self.target.group == "" and self.target.version != "v1":
            prefix = f"/api/{self.target.version}"
        if self.namespaced and self.target.namespace is not None:
            return f"{prefix}/namespaces/{self.target.namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"


def _failure(call: str, status: int, body: Any) -> KubeError:
    """The error a non-2xx answer means to the list+watch loop."""
    message = body.get("message", "") if isinstance(body, dict) else ""
    if _is_expired(status, body):
        return ResourceExpired(f"{call}: {status} {message}")
    if status == 404:
        return KindNotServed(f"{call}: 404")
    if status in (401, 403):
        return AccessDenied(f"{call}: {status} {message}")
    return KubeError(f"{call}: {status} {message}")


def _is_expired(status: int, body: Any) -> bool:
    if status == 410:
        return True
    return isinstance(body, dict) and body.get("reason") in {"Expired", "Gone"}


def _send(
    api: ApiClient,
    path: str,
    query: Mapping[str, str],
    timeout: float | tuple[float, float],
) -> Any:
    method, url, headers, body, post = api.param_serialize(
        method="GET",
        resource_path=path,
        query_params=list(query.items()) or None,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    try:
        return api.call_api(method, url, headers, body, post, _request_timeout=timeout)
    except ApiException as exc:
        raise KubeError(f"GET {path}: {exc.status} {exc.reason}") from exc
    except (Urllib3Error, OSError) as exc:
        raise KubeError(f"GET {path}: {exc}") from exc


def _get_json(api: ApiClient, path: str, query: Mapping[str, str]) -> Obj:
    response = _send(api, path, query, (CONNECT_TIMEOUT_S, LIST_TIMEOUT_S))
    try:
        data: bytes = response.read()
    except (Urllib3Error, OSError) as exc:
        raise KubeError(f"GET {path}: reading the answer failed: {exc}") from exc
    try:
        decoded = json.loads(data) if data else {}
    except json.JSONDecodeError as exc:
        raise KubeError(f"GET {path}: answer is not JSON: {exc}") from exc
    if not 200 <= response.status <= 299:
        raise _failure(f"GET {path}", response.status, decoded)
    if not isinstance(decoded, dict):
        raise KubeError(f"GET {path}: answer is not a JSON object")
    return decoded


def discover(api: ApiClient, target: WatchTarget) -> ServedKind:
    """Find the kind's plural and scope in its group-version's discovery document."""
    prefix = f"/apis/{target.api_version}" if target.group else f"/api/{target.version}"
    document = _get_json(api, prefix, {})
    for entry in document.get("resources", []):
        name = entry.get("name", "")
        if entry.get("kind") == target.kind and "/" not in name:
            verbs = set(entry.get("verbs") or ())
            if verbs and not {"list", "watch"} <= verbs:
                raise KindNotServed(f"{target.gvk} cannot be listed and watched")
            return ServedKind(target, name, bool(entry.get("namespaced")))
    raise KindNotServed(f"the server serves no kind {target.kind} in {target.api_version}")


def list_page(
    api: ApiClient,
    served: ServedKind,
    label_selector: str,
    limit: int,
    continue_token: str | None,
) -> Obj:
    """One LIST page, a ``...List`` object; ``metadata.continue`` is set when more follow."""
    query = {"labelSelector": label_selector, "limit": str(limit)}
    if continue_token:
        query["continue"] = continue_token
    return _get_json(api, served.collection_path(), query)


class WatchStream:
    """One open WATCH answer; iterate it for events, :meth:`close` it from any thread."""

    def __init__(self, response: Any, path: str) -> None:
        self._response = response
        self._path = path

    def events(self) -> Iterator[Obj]:
        raw = self._response.response
        try:
            for line in split_lines(raw.stream(amt=STREAM_CHUNK_BYTES, decode_content=True)):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise KubeError(f"WATCH {self._path}: line is not JSON: {exc}") from exc
                if not isinstance(event, dict):
                    raise KubeError(f"WATCH {self._path}: event is not a JSON object")
                yield event
        except (Urllib3Error, OSError) as exc:
            raise KubeError(f"WATCH {self._path}: stream broke: {exc}") from exc
        finally:
            self.close()

    def interrupt(self) -> None:
        """Wake a reader blocked on this stream, from another thread (it then sees the stream
        end). Closing instead would block on the reader's SSL lock."""
        with contextlib.suppress(Exception):
            self._response.response.shutdown()

    def close(self) -> None:
        """Release the connection; only from the thread that reads the stream."""
        raw = self._response.response
        with contextlib.suppress(Exception):  # a broken connection may raise; closed anyway
            raw.close()
            raw.release_conn()


def open_watch(
    api: ApiClient,
    served: ServedKind,
    label_selector: str,
    resource_version: str,
    timeout_s: int,
) -> WatchStream:
    """Start a WATCH from ``resource_version`` with bookmarks; the server ends it after
    ``timeout_s`` (0: after a time of its choosing, ``--min-request-timeout`` to twice it).
    The client gives up on a connection silent for longer than that (bookmarks arrive
    about every minute), and the caller re-watches."""
    path = served.collection_path()
    query = {
        "watch": "true",
        "labelSelector": label_selector,
        "resourceVersion": resource_version,
        "allowWatchBookmarks": "true",
    }
    if timeout_s > 0:
        query["timeoutSeconds"] = str(timeout_s)
    read_timeout = float((timeout_s or DEFAULT_SILENCE_S) + 30)
    response = _send(api, path, query, (CONNECT_TIMEOUT_S, read_timeout))
    if not 200 <= response.status <= 299:
        try:
            body = json.loads(response.read() or b"{}")
        except (json.JSONDecodeError, Urllib3Error, OSError):
            body = {}
        raise _failure(f"WATCH {path} from {resource_version}", response.status, body)
    return WatchStream(response, path)
