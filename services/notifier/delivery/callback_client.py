"""The HTTP edge: one POST of one callback, with the network fence applied first.

One shared ``httpx.AsyncClient`` serves every subscription: connections are pooled per host,
every request is bounded by ``DELTAWATCH_CALLBACK_TIMEOUT_S``, and redirects are not
followed (a redirect could lead around the network fence). A hanging endpoint therefore
costs one pooled connection and one coroutine until its timeout, never a thread, and never
delays another subscription. The pool is as large as the number of POSTs
:mod:`services.notifier.delivery.deliveries` lets run at once, so requests never queue inside httpx
(whose pool scans its whole queue on every release: thousands queued there would stall the
event loop).

An attempt never raises: it ends as an :class:`AttemptResult` with the HTTP status, or
status 0 and the reason (timeout, connection error, refused address).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from services.notifier.commands import url_host_port
from services.notifier.delivery.callback_networks import Network, refusal, resolve
from services.notifier.delivery.retry_policy import retry_after_s
from services.notifier.delivery.webhook_signing import webhook_headers


@dataclass(frozen=True)
class AttemptResult:
    at: float
    status: int
    """HTTP status; 0 when there was no response."""
    error: str | None = None
    retry_after_s: float | None = None
    refused: bool = False
    """The address was fenced off: never retried."""
    ended_at: float = 0.0
    """When the exchange ended: the throttle window starts here, so the *receiver* never sees
    two POSTs closer than the interval, whatever the connection setup took."""


class CallbackClient:
    def __init__(
        self,
        timeout_s: float,
        allow: Sequence[Network] = (),
        deny: Sequence[Network] = (),
        concurrency: int = 500,
    ) -> None:
        limits = httpx.Limits(
            max_connections=concurrency,
            max_keepalive_connections=min(concurrency, 200),
            keepalive_expiry=30,
        )
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s), limits=limits, follow_redirects=False
        )
        self._timeout_s = timeout_s
        self._allow = list(allow)
        self._deny = list(deny)

    async def close(self) -> None:
        await self._client.aclose()

    async def post(
        self, url: str, webhook_id: str, body: bytes, key: bytes | None
    ) -> AttemptResult:
        started = time.time()
        if self._allow or self._deny:
            host, port = url_host_port(url)
            addresses = await resolve(host, port, self._timeout_s)
            if not addresses:
                return AttemptResult(
                    started, 0, f"host {host!r} does not resolve", None, False, time.time()
                )
            why = refusal(addresses, self._allow, self._deny)
            if why is not None:
                return AttemptResult(started, 0, f"refused: {why}", None, True, time.time())
        headers = webhook_headers(webhook_id, int(started), body, key)
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return AttemptResult(
                started, 0, f"timed out after {self._timeout_s:g}s", ended_at=time.time()
            )
        except httpx.HTTPError as exc:
            return AttemptResult(
                started, 0, f"{type(exc).__name__}: {exc}".rstrip(": "), ended_at=time.time()
            )
        return AttemptResult(
            started,
            response.status_code,
            None if response.is_success else f"HTTP {response.status_code}",
            retry_after_s(response.headers.get("retry-after"), datetime.now(UTC)),
            ended_at=time.time(),
        )
