"""The callback sink: a real HTTP server that plays a subscriber endpoint and records every request.

One sink for every user: the demo and the benchmark (``on_request`` sees each callback as it
arrives), the test tiers (they await conditions on what arrived, script failures and prove
retries, backoff, throttle gaps and signatures), the reliability tier (down and back on the same
port, 500 / 429 + Retry-After, hanging past the notifier's timeout) and the docker compose stack,
which runs this very file as its ``callback-sink`` image (``python callback_sink.py``, see
:func:`main`). Standard library only, so that image is the bare Python base.

Every request but the control endpoints is recorded with its method, path, headers, body, arrival
time and the status it was answered (:data:`HANG` if it was held open and never answered), then
answered from a script: a queue of :class:`Reply` (status, headers, a delay, or hang until
released), then a default (200). Control endpoints, for a sink that runs out of process:
``GET /received`` lists what was recorded as JSON (``?path=/notify/x`` keeps one subscriber's),
``DELETE /received`` forgets it, ``GET /healthz`` answers 200.

    with CallbackSink() as sink:
        subscribe(callback_url=sink.url())
        [first] = sink.wait_count(1)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

HANG = -1
"""A :class:`Reply` status: hold the request open until released (or the sink stops), then close
the connection without an answer."""

CHANGE_KINDS = ("created", "deleted", "modified")


@dataclass(frozen=True)
class Reply:
    """How to answer one request: ``status`` (or :data:`HANG`) with ``headers``, after waiting
    ``delay_s`` (cut short by :meth:`CallbackSink.release_hanging` or a stop)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @property
    def mode(self) -> str:
        """What :attr:`CallbackSink.served` counts it as: ``"hang"`` or the status."""
        return "hang" if self.status == HANG or self.delay_s else str(self.status)


@dataclass(frozen=True)
class Request:
    """One request as the sink saw it, whatever it answered."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: float
    answered: int  # the status of the reply it got (HANG: none)

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    def as_json(self) -> dict[str, Any]:
        """The ``GET /received`` form: the body decoded as JSON if it is JSON."""
        try:
            body: Any = json.loads(self.body)
        except ValueError:
            body = self.body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": body,
            "received-at": self.received_at,
            "answered": self.answered,
        }


class SinkTimeout(AssertionError):
    """:meth:`CallbackSink.wait_for` ran out of time."""


class CallbackSink:
    """A subscriber endpoint on ``host:port`` (port 0: a free one, kept across restarts).

    ``on_request`` is called with each recorded request before it is answered (from the
    handler's thread). ``max_records`` bounds what is kept (the oldest go first); ``log``
    prints one JSON line per request (the compose image's ``docker compose logs``).
    """

    def __init__(
        self,
        default: Reply | None = None,
        *,
        on_request: Callable[[Request], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_records: int | None = None,
        log: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._default = default or Reply()
        self._script: deque[Reply] = deque()
        self._records: deque[Request] = deque(maxlen=max_records)
        self._on_request = on_request
        self._log = log
        self._condition = threading.Condition()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self.served: Counter[str] = Counter()
        """Requests met, by :attr:`Reply.mode`, plus ``"down"``: those that arrived on a
        kept-alive connection while the sink was stopped (they die unanswered, unrecorded)."""

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> CallbackSink:
        """Listen (again, on the same port after :meth:`stop`); a no-op while listening."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._release.clear()
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until :meth:`start` opens it again. Held requests
        are released and kept-alive connections cut, as for an endpoint that went away."""
        server, self._server = self._server, None
        self._release.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._condition:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop` (from another thread or a signal)."""
        server = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        server.serve_forever()
        server.server_close()

    def __enter__(self) -> CallbackSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def down(self) -> bool:
        return self._server is None

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self._port}/{path.lstrip('/')}"

    # -- how it answers -------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order, then the default: e.g. fail
        three times with ``script(*[Reply(500)] * 3)``."""
        with self._condition:
            self._script.extend(replies)

    def answer_by_default(self, reply: Reply) -> None:
        """Answer every request not scripted with ``reply`` from now on (``Reply()``: heal; a
        request already held still waits its time)."""
        with self._condition:
            self._default = reply

    def release_hanging(self) -> None:
        """End every hold, present and future (until the next :meth:`start`)."""
        self._release.set()

    def _next_reply(self) -> Reply:
        with self._condition:
            return self._script.popleft() if self._script else self._default

    # -- what arrived ---------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        """Every request recorded, in arrival order."""
        with self._condition:
            return list(self._records)

    def requests_to(self, path: str) -> list[Request]:
        wanted = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == wanted]

    def clear(self) -> None:
        with self._condition:
            self._records.clear()

    def wait_for(
        self, predicate: Callable[[list[Request]], bool], timeout_s: float = 30.0
    ) -> list[Request]:
        """Block until ``predicate(requests)`` holds and return the requests then; raise
        :class:`SinkTimeout` if ``timeout_s`` passes first."""
        with self._condition:
            if not self._condition.wait_for(lambda: predicate(list(self._records)), timeout_s):
                last = self._records[-1].body[:500] if self._records else b""
                raise SinkTimeout(
                    f"condition not met in {timeout_s}s; got {len(self._records)} requests"
                    + (f", the last with body {last!r}" if last else "")
                )
            return list(self._records)

    def wait_count(self, count: int, timeout_s: float = 30.0) -> list[Request]:
        return self.wait_for(lambda requests: len(requests) >= count, timeout_s)

    # -- the handler's side ---------------------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._condition:
            self._records.append(request)
            self._condition.notify_all()
        if self._log:
            print(json.dumps(_log_line(request)), flush=True)
        if self._on_request is not None:
            self._on_request(request)


def _log_line(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    changes = body.get("resource-changes")
    changes = changes if isinstance(changes, dict) else {}
    return {
        "event": "callback",
        "method": request.method,
        "path": request.path,
        "answered": request.answered,
        "webhook-id": request.headers.get("webhook-id"),
        "instance-id": body.get("instance-id"),
        "subscription-name": body.get("subscription-name"),
        **{kind: len(changes.get(kind) or []) for kind in CHANGE_KINDS},
    }


def _handler_for(sink: CallbackSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "deltawatch-callback-sink"

        def setup(self) -> None:
            super().setup()
            with sink._condition:
                sink._connections.add(self.connection)

        def finish(self) -> None:
            with sink._condition:
                sink._connections.discard(self.connection)
            super().finish()

        def _reply_json(self, status: int, payload: Any = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _control(self) -> bool:
            """Answer a control endpoint; False if this request is not one."""
            url = urlsplit(self.path)
            if self.command == "GET" and url.path == "/healthz":
                self._reply_json(200, {"alive": True})
            elif self.command == "GET" and url.path == "/received":
                wanted = parse_qs(url.query).get("path")
                found = [r.as_json() for r in sink.requests if not wanted or r.path in wanted]
                self._reply_json(200, found)
            elif self.command == "DELETE" and url.path == "/received":
                sink.clear()
                self._reply_json(204)
            else:
                return False
            return True

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self._control():
                return
            if sink.down:  # a kept-alive connection of a stopped sink dies unanswered
                sink.served["down"] += 1
                self.close_connection = True
                return
            reply = sink._next_reply()
            sink.served[reply.mode] += 1
            sink._record(
                Request(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                    time.time(),
                    reply.status,
                )
            )
            if reply.status == HANG:
                sink._release.wait()
                self.close_connection = True
                return
            if reply.delay_s:
                sink._release.wait(reply.delay_s)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    """The compose image: listen on 0.0.0.0:``SINK_PORT`` (8080), keep the last
    ``SINK_MAX_RECORDS`` (10000) requests, log one line per request, stop on SIGTERM."""
    port = int(os.environ.get("SINK_PORT", "8080"))
    max_records = int(os.environ.get("SINK_MAX_RECORDS", "10000"))
    sink = CallbackSink(host="0.0.0.0", port=port, max_records=max_records, log=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=sink.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    sink.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
