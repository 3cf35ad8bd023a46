"""Who may call the REST facade: Kubernetes bearer tokens, as kube-rbac-proxy checks them.

With ``DELTAWATCH_API_AUTH=kubernetes`` every ``/v1`` request must carry ``Authorization:
Bearer <token>`` (typically the caller's ServiceAccount token). The token is authenticated
with a TokenReview; the user it names is then authorised for the request's verb with a
SubjectAccessReview on resource ``subscriptions`` of group ``deltawatch.io`` (no namespace:
a subscription belongs to an instance, not to a Kubernetes namespace), so access is granted
with an ordinary ClusterRole. No token or an invalid one answers 401, a user without the
verb 403, both in the facade's error shape; an API server that cannot be asked answers 503
``auth-unavailable`` (never cached, never a silent allow).

Both reviews are cached for ``DELTAWATCH_API_AUTH_CACHE_TTL_S`` (default 10 s; 0 = never) in
bounded LRU maps keyed by a digest of the token and by (user, groups, verb), so a busy client
costs the API server two requests per TTL, and a revoked token or role binding stops working
within one TTL. The calls are blocking client calls, run in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from deltawatch.logs import get_logger
from deltawatch.settings import NotifierSettings
from services.notifier.rest.errors import ApiError

API_GROUP = "deltawatch.io"
RESOURCE = "subscriptions"
CACHE_MAX_ENTRIES = 4096

AUTH_REQUESTS = Counter(
    "deltawatch_notifier_rest_auth_total",
    "REST facade requests by authentication/authorisation outcome: allowed, "
    "unauthenticated (401), forbidden (403), unavailable (503, the API server was not reachable).",
    ["outcome"],
)
REVIEWS = Counter(
    "deltawatch_notifier_rest_auth_reviews_total",
    "Token and access reviews by review (token, access) and source (api, cache).",
    ["review", "source"],
)

log = get_logger("notifier.rest.auth")

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """An LRU map whose entries expire ``ttl_s`` after they were put; at most ``size`` kept."""

    def __init__(self, ttl_s: float, size: int = CACHE_MAX_ENTRIES) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl_s <= 0:
            return
        self._entries[key] = (time.monotonic() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


@dataclass(frozen=True)
class Caller:
    """The user a TokenReview found behind a token."""

    username: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


class AuthUnavailableError(Exception):
    """The API server could not answer a review."""


def verb_of(route: str, method: str) -> str:
    """The Kubernetes verb of a facade request: list/create on the collection, get/update/
    delete on one subscription."""
    on_item = route.endswith("}")
    return {
        "GET": "get" if on_item else "list",
        "POST": "create",
        "PUT": "update",
        "DELETE": "delete",
    }.get(method, method.lower())


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class AccessReview:
    """Authenticates and authorises facade requests against the Kubernetes API."""

    def __init__(self, api: Any, cache_ttl_s: float) -> None:
        from kubernetes import client

        self._client = client
        self._authn = client.AuthenticationV1Api(api)
        self._authz = client.AuthorizationV1Api(api)
        self._callers: TtlCache[str, Caller | None] = TtlCache(cache_ttl_s)
        self._decisions: TtlCache[tuple[Caller, str], bool] = TtlCache(cache_ttl_s)

    @classmethod
    def from_settings(cls, settings: NotifierSettings) -> AccessReview | None:
        """None when ``DELTAWATCH_API_AUTH=none``; else a reviewer with the Kubernetes client
        of ``KUBECONFIG``, else in-cluster config, else ``~/.kube/config``."""
        if settings.api_auth == "none":
            return None
        from kubernetes import config as kube_config
        from kubernetes.client import ApiClient

        api: Any
        try:
            if settings.kubeconfig:
                api = kube_config.new_client_from_config(config_file=settings.kubeconfig)  # type: ignore[no-untyped-call]
            else:
                try:
                    kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
                    api = ApiClient()
                except kube_config.ConfigException:
                    api = kube_config.new_client_from_config()  # type: ignore[no-untyped-call]
        except Exception as exc:  # an unusable kubeconfig is a configuration error: exit 2
            print(
                "deltawatch-notifier: configuration error: DELTAWATCH_API_AUTH=kubernetes needs "
                f"a Kubernetes client (in-cluster or KUBECONFIG): {exc}",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        return cls(api, settings.api_auth_cache_ttl_s)

    async def check(self, request: Request, verb: str) -> Response | None:
        """None when the request may proceed; else the 401/403/503 answer to give."""
        token = bearer_token(request)
        try:
            caller = None if token is None else await self._authenticate(token)
            if caller is None:
                AUTH_REQUESTS.labels("unauthenticated").inc()
                why = "no bearer token" if token is None else "the token is not valid"
                response = ApiError(
                    401,
                    "unauthenticated",
                    f"{why}: send Authorization: Bearer <a Kubernetes ServiceAccount token>",
                ).response()
                response.headers["WWW-Authenticate"] = 'Bearer realm="deltawatch"'
                return response
            if not await self._authorize(caller, verb):
                AUTH_REQUESTS.labels("forbidden").inc()
                log.info("request forbidden", user=caller.username, verb=verb)
                return ApiError(
                    403,
                    "forbidden",
                    f'user "{caller.username}" cannot {verb} resource "{RESOURCE}" in API '
                    f'group "{API_GROUP}"',
                ).response()
        except AuthUnavailableError as exc:
            AUTH_REQUESTS.labels("unavailable").inc()
            log.warning("access review failed", error=str(exc))
            return ApiError(503, "auth-unavailable", str(exc)).response()
        AUTH_REQUESTS.labels("allowed").inc()
        return None

    async def _authenticate(self, token: str) -> Caller | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, caller = self._callers.get(key)
        REVIEWS.labels("token", "cache" if hit else "api").inc()
        if not hit:
            caller = await asyncio.to_thread(self._token_review, token)
            self._callers.put(key, caller)
        return caller

    async def _authorize(self, caller: Caller, verb: str) -> bool:
        hit, allowed = self._decisions.get((caller, verb))
        REVIEWS.labels("access", "cache" if hit else "api").inc()
        if not hit:
            allowed = await asyncio.to_thread(self._access_review, caller, verb)
            self._decisions.put((caller, verb), allowed)
        return bool(allowed)

    def _token_review(self, token: str) -> Caller | None:
        review = self._client.V1TokenReview(spec=self._client.V1TokenReviewSpec(token=token))
        status = self._call(self._authn.create_token_review, review).status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (user.extra or {}).items()))
        return Caller(user.username or "", user.uid or "", tuple(user.groups or ()), extra)

    def _access_review(self, caller: Caller, verb: str) -> bool:
        spec = self._client.V1SubjectAccessReviewSpec(
            user=caller.username,
            uid=caller.uid or None,
            groups=list(caller.groups),
            extra={k: list(v) for k, v in caller.extra} or None,
            resource_attributes=self._client.V1ResourceAttributes(
                group=API_GROUP, resource=RESOURCE, verb=verb
            ),
        )
        review = self._client.V1SubjectAccessReview(spec=spec)
        status = self._call(self._authz.create_subject_access_review, review).status
        return bool(status is not None and status.allowed)

    def _call(self, create: Any, body: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return create(body, _request_timeout=(5, 10))
        except ApiException as exc:
            raise AuthUnavailableError(f"{type(body).__name__}: {exc.status} {exc.reason}") from exc
        except (HTTPError, OSError) as exc:
            raise AuthUnavailableError(f"{type(body).__name__}: {exc}") from exc
