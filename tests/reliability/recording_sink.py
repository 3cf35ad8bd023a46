"""A subscriber endpoint that records every POST and can misbehave on cue.

Why not ``deltawatch_tools.callback_sink.CallbackSink``: the oracle needs *every* attempt (with the
status it was answered), and the faults need more than a status: hanging past the notifier's
timeout (the body was received, so the retry is a real duplicate a subscriber must dedupe by
``webhook-id``) and being down (port closed, connection refused) then back on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.reliability.oracle import Receipt


@dataclass(frozen=True)
class Behaviour:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    hang_s: float = 0.0

    @property
    def mode(self) -> str:
        return "hang" if self.hang_s else str(self.status)


class RecordingSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receipts: dict[str, list[Receipt]] = defaultdict(list)
        self.behaviour = Behaviour()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self.served: Counter[str] = Counter()  # requests met, by behaviour (see Behaviour.mode)
        self._release = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> RecordingSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with sink._lock:
                    sink._connections.add(self.connection)

            def finish(self) -> None:
                with sink._lock:
                    sink._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if sink._server is None:  # down: a kept-alive connection dies unanswered
                    sink.served["down"] += 1
                    self.close_connection = True
                    return
                behaviour = sink.behaviour
                sink.served[behaviour.mode] += 1
                sink._record(self.path, self.headers.get("webhook-id", ""), body, behaviour)
                if behaviour.hang_s:
                    sink._release.wait(behaviour.hang_s)
                self.send_response(behaviour.status)
                for name, value in behaviour.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._release.clear()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until :meth:`start` opens it again."""
        server, self._server = self._server, None
        self._release.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:  # kept-alive connections too: a down endpoint answers nothing
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def down(self) -> bool:
        return self._server is None

    def url(self, subscription: str) -> str:
        return f"http://127.0.0.1:{self.port}/{subscription}"

    # -- misbehaving ----------------------------------------------------------------------
    def answer(self, status: int = 200, retry_after: str | None = None) -> None:
        headers = (("Retry-After", retry_after),) if retry_after is not None else ()
        self.behaviour = Behaviour(status, headers)

    def hang(self, seconds: float) -> None:
        self.behaviour = Behaviour(hang_s=seconds)

    def heal(self) -> None:
        """Answer 200 from now on; a request already hanging still hangs its full time (its
        sender gave up on it anyway)."""
        self.behaviour = Behaviour()

    # -- what arrived ---------------------------------------------------------------------
    def _record(self, path: str, webhook_id: str, body: bytes, behaviour: Behaviour) -> None:
        receipt = Receipt(webhook_id, time.time(), body, behaviour.status)
        with self._lock:
            self._receipts[path.strip("/")].append(receipt)

    def receipts(self, subscription: str) -> list[Receipt]:
        with self._lock:
            return list(self._receipts[subscription])

    def total(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._receipts.values())
