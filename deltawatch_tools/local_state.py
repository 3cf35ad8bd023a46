"""Where the local broker and API server keep their binaries, data and run state.

Everything lives outside the repository (``DELTAWATCH_CACHE_DIR``, default
``~/.cache/deltawatch``) so that a fresh clone reuses what an earlier checkout downloaded or
built, and so that separate processes (the CLI, a test session, the demo) can find and reuse a
server that another one started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    root = Path(os.environ.get("DELTAWATCH_CACHE_DIR", Path.home() / ".cache" / "deltawatch"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_dir(name: str) -> Path:
    path = cache_dir() / "run" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise start/stop of one local server across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_alive(pid: int, cmdline_marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``cmdline_marker`` (no PID reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline_marker.encode() in cmdline
