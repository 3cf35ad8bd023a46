"""One line per first-run step (fetching the Kafka jars, building etcd and kube-apiserver), the
tool's whole output in a log file that is named when the step fails.

Why: a first run used to print a thousand lines of Maven and Go chatter before the demo's first
useful line, and a user could not tell progress from trouble. What a user needs is which step
runs, that it is moving, and where to look when it breaks. So a step's command writes into its
log file only; the terminal gets one line per step. On a terminal that line counts up in place
(``\\r``) as the tool reports units of work (files downloaded, packages compiled); in a pipe or
a CI log, where ``\\r`` would pile up, the line is opened when the step starts and finished
when it ends. On failure the exception names the log file and carries its last lines.
"""

from __future__ import annotations

import collections
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

_REDRAW_EVERY_S = 0.5
_TAIL_LINES = 25


class SetupStepError(RuntimeError):
    """The step's command failed; the message names its log file and quotes its last lines."""


@dataclass(frozen=True)
class Counter:
    """Which output lines of the tool count as one unit of work, and what the unit is called."""

    unit: str
    counts: Callable[[str], bool]


class _Line:
    """The step's one line on ``stream``: opened, redrawn with the counts, finished."""

    def __init__(self, stream: TextIO | None, title: str) -> None:
        self._stream = stream
        self._title = title
        self._live = stream is not None and stream.isatty()
        self._drawn = 0.0

    def _write(self, text: str) -> None:
        if self._stream is not None:
            self._stream.write(text)
            self._stream.flush()

    def open(self) -> None:
        self._write(f"{self._title} ..." if not self._live else f"\r{self._title} ...")

    def redraw(self, counts: str, elapsed_s: float) -> None:
        now = time.monotonic()
        if self._live and now - self._drawn >= _REDRAW_EVERY_S:
            self._drawn = now
            self._write(f"\r\x1b[K{self._title} ... {counts} ({elapsed_s:.0f}s)")

    def close(self, outcome: str) -> None:
        self._write(f"\r\x1b[K{self._title}: {outcome}\n" if self._live else f" {outcome}\n")


def _describe(counters: Sequence[Counter], totals: list[int]) -> str:
    return ", ".join(f"{n} {c.unit}" for c, n in zip(counters, totals, strict=True) if n)


def _run_logged(
    command: Sequence[str], cwd: Path | None, log_file: Path, seen: Callable[[str], None]
) -> int:
    """Run ``command``, every output line into ``log_file`` and to ``seen``; its exit code."""
    with log_file.open("w") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        with subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.write(raw)
                seen(raw)
            return proc.wait()


def run_step(
    title: str,
    command: Sequence[str],
    log_file: Path,
    *,
    cwd: Path | None = None,
    stream: TextIO | None = None,
    counters: Sequence[Counter] = (),
) -> None:
    """Run ``command`` as one step: its output into ``log_file``, one line on ``stream``.

    Raises :class:`SetupStepError` when it cannot start or exits non-zero (the log file stays
    for reading). The line is finished whatever happens, Ctrl-C included.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    line = _Line(stream, title)
    line.open()
    started = time.monotonic()
    totals = [0] * len(counters)
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)

    def seen(raw: str) -> None:
        tail.append(raw.rstrip())
        for index, counter in enumerate(counters):
            totals[index] += counter.counts(raw)
        line.redraw(_describe(counters, totals), time.monotonic() - started)

    try:
        returncode = _run_logged(command, cwd, log_file, seen)
    except BaseException as exc:
        line.close(f"FAILED ({type(exc).__name__}); output so far in {log_file}")
        if isinstance(exc, OSError):
            raise SetupStepError(f"{title}: cannot run {command[0]}: {exc}") from exc
        raise
    elapsed = f"{time.monotonic() - started:.0f}s"
    if returncode != 0:
        line.close(f"FAILED after {elapsed} (exit {returncode}); full output in {log_file}")
        raise SetupStepError(
            f"{title}: exit {returncode}; full output in {log_file}; last lines:\n"
            + "\n".join(tail)
        )
    counts = _describe(counters, totals)
    line.close(f"done in {elapsed}" + (f", {counts}" if counts else "") + f" (log: {log_file})")
