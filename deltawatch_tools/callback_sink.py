"""A real HTTP server that receives deltawatch callbacks and remembers them.

Used by the demo (it prints each callback as it arrives) and by end-to-end tests (they await
conditions on what arrived). It answers 2xx by default; ``respond_with`` lets a test make it
fail (500, 429 with Retry-After, 400) for a while, as a real subscriber endpoint might.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ReceivedCallback:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


class CallbackSink:
    def __init__(
        self,
        on_callback: Callable[[ReceivedCallback], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.received: list[ReceivedCallback] = []
        self._condition = threading.Condition()
        self._on_callback = on_callback
        self._status = 200
        self._extra_headers: dict[str, str] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status, extra = sink._status, dict(sink._extra_headers)
                if 200 <= status < 300:
                    callback = ReceivedCallback(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                    with sink._condition:
                        sink.received.append(callback)
                        sink._condition.notify_all()
                    if sink._on_callback is not None:
                        sink._on_callback(callback)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> CallbackSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond_with(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._status = status
        self._extra_headers = headers or {}

    def wait_for(
        self, predicate: Callable[[list[ReceivedCallback]], bool], timeout_s: float
    ) -> bool:
        """Block until ``predicate(received)`` holds or ``timeout_s`` passes."""
        with self._condition:
            return self._condition.wait_for(lambda: predicate(list(self.received)), timeout_s)
