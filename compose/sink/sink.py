"""The compose stack's callback sink: a subscriber endpoint that records what it receives.

A real HTTP server, standard library only, so the image is the bare Python base. Every POST (any
path) is answered 200 and remembered with its headers and JSON body; ``GET /received`` returns
them (``?path=/notify/x`` keeps one subscriber's), ``DELETE /received`` forgets them, and each
callback is also logged as one line so ``docker compose logs callback-sink`` shows the flow.
Only the last ``SINK_MAX_RECORDS`` are kept, so a long-running stack does not grow without bound.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_RECORDS = int(os.environ.get("SINK_MAX_RECORDS", "10000"))
PORT = int(os.environ.get("SINK_PORT", "8080"))
CHANGE_KINDS = ("created", "deleted", "modified")

_records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
_lock = threading.Lock()


def _body_of(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Handler(BaseHTTPRequestHandler):
    server_version = "deltawatch-callback-sink"

    def _reply(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": _body_of(raw),
            "received-at": time.time(),
        }
        with _lock:
            _records.append(record)
        body = record["body"]
        changes = body.get("resource-changes", {}) if isinstance(body, dict) else {}
        print(
            json.dumps(
                {
                    "event": "callback",
                    "path": self.path,
                    "webhook-id": record["headers"].get("webhook-id"),
                    "instance-id": body.get("instance-id") if isinstance(body, dict) else None,
                    "subscription-name": (
                        body.get("subscription-name") if isinstance(body, dict) else None
                    ),
                    **{kind: len(changes.get(kind) or []) for kind in CHANGE_KINDS},
                }
            ),
            flush=True,
        )
        self._reply(200)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._reply(200, {"alive": True})
        elif url.path == "/received":
            wanted = parse_qs(url.query).get("path")
            with _lock:
                found = [r for r in _records if not wanted or r["path"] in wanted]
            self._reply(200, found)
        else:
            self._reply(404, {"error": f"no such path {url.path}"})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path != "/received":
            self._reply(404, {"error": "no such path"})
            return
        with _lock:
            _records.clear()
        self._reply(204)

    def log_message(self, format: str, *args: Any) -> None:  # one line per callback is enough
        pass


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"event": "listening", "port": PORT}), flush=True)
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
