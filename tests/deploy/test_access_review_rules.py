"""The pure parts of the REST facade's access review: the verb of a request, the bearer
token, the bounded expiring cache (the reviews themselves are tested against the API server in
test_rest_auth.py)."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request

from services.notifier.rest.access_review import TtlCache, bearer_token, verb_of

pytestmark = pytest.mark.deploy

BASE = "/v1/instance/{instID}/status/subscription"


@pytest.mark.parametrize(
    ("route", "method", "verb"),
    [
        (BASE, "GET", "list"),
        (BASE, "POST", "create"),
        (f"{BASE}/{{subID}}", "GET", "get"),
        (f"{BASE}/{{subID}}", "PUT", "update"),
        (f"{BASE}/{{subID}}", "DELETE", "delete"),
    ],
)
def test_each_route_and_method_is_one_kubernetes_verb(route: str, method: str, verb: str) -> None:
    assert verb_of(route, method) == verb


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer abc.def", "abc.def"),
        ("bearer  abc ", "abc"),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("Bearer   ", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(request_with(header)) == token


def test_cache_expires_and_stays_bounded() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_s=0.2, size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)  # now the most recently used
    cache.put("c", 3)  # evicts the least recently used: b
    assert cache.get("b") == (False, None)
    assert cache.get("a") == (True, 1)
    time.sleep(0.25)
    assert cache.get("a") == (False, None)
    never: TtlCache[str, int] = TtlCache(ttl_s=0)
    never.put("a", 1)
    assert never.get("a") == (False, None)
