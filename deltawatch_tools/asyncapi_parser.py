"""The official AsyncAPI parser, installed by the project on first use, run on a document.

``schemas/asyncapi.yaml`` is validated by the reference implementation rather than by a
Python look-alike: the parser (npm ``@asyncapi/parser``, with ``@asyncapi/avro-schema-parser``
for the Avro payload) checks the document against the AsyncAPI 3.0 specification, resolves
every ``$ref`` into the JSON Schemas and the Avro schema, and applies its ruleset. Like the
Kafka jars, the pinned packages are installed once into the cache (``npm install``, one
progress line, npm's output in a log file) and reused; a file lock keeps two test processes
from installing at once. Node.js and npm are the only prerequisites.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltawatch_tools.local_state import cache_dir, file_lock
from deltawatch_tools.setup_step import run_step

PACKAGES = {"@asyncapi/parser": "3.6.6", "@asyncapi/avro-schema-parser": "3.1.0"}
SCRIPT = Path(__file__).with_name("asyncapi_validate.mjs")
ERROR, WARNING, INFORMATION, HINT = 0, 1, 2, 3  # the parser's (Spectral's) severities


class AsyncApiParserError(RuntimeError):
    """Node or npm is missing, the install failed, or the parser itself crashed."""


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: int
    message: str
    path: tuple[str | int, ...]

    def __str__(self) -> str:
        where = "/".join(str(p) for p in self.path) or "(document)"
        return f"{self.code} at {where}: {self.message}"


@dataclass(frozen=True)
class ParseReport:
    parsed: bool
    diagnostics: tuple[Diagnostic, ...]

    def at_least(self, severity: int) -> list[Diagnostic]:
        """The diagnostics as severe as ``severity`` or more (ERROR is the most severe)."""
        return [d for d in self.diagnostics if d.severity <= severity]


def parser_dir() -> Path:
    pins = "-".join(f"{name.rsplit('/', 1)[-1]}-{v}" for name, v in sorted(PACKAGES.items()))
    return cache_dir() / "npm" / pins


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AsyncApiParserError(f"validating AsyncAPI documents needs {name} (Node.js) on PATH")
    return found


def ensure_parser() -> Path:
    """The directory whose ``node_modules`` holds the pinned parser; installed if missing."""
    target = parser_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    npm = _executable("npm")
    with file_lock(target.parent / f"{target.name}.lock"):
        if marker.exists():
            return target
        target.mkdir(parents=True, exist_ok=True)
        manifest = {"name": "deltawatch-asyncapi-parser", "private": True, "dependencies": PACKAGES}
        (target / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        run_step(
            "[asyncapi] installing "
            + ", ".join(f"{n}@{v}" for n, v in PACKAGES.items())
            + " from npm (first run only)",
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            target / "npm-install.log",
            cwd=target,
            stream=sys.stderr,
        )
        marker.write_text(json.dumps(PACKAGES) + "\n")
    return target


def parse(document: Path) -> ParseReport:
    """Parse ``document`` (its relative ``$ref`` files next to it) and report the diagnostics."""
    modules = ensure_parser() / "node_modules"
    script = modules.parent / SCRIPT.name  # next to node_modules, so that its imports resolve
    if not script.exists() or script.read_text() != SCRIPT.read_text():
        script.write_text(SCRIPT.read_text())
    result = subprocess.run(
        [_executable("node"), str(script), str(document.resolve())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AsyncApiParserError(f"the AsyncAPI parser failed (exit {result.returncode}):\n"
                                  + result.stderr[-3000:])  # fmt: skip
    raw: dict[str, Any] = json.loads(result.stdout)
    return ParseReport(
        parsed=bool(raw["parsed"]),
        diagnostics=tuple(
            Diagnostic(d["code"], int(d["severity"]), d["message"], tuple(d.get("path") or ()))
            for d in raw["diagnostics"]
        ),
    )
