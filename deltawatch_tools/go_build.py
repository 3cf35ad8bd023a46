"""A binary built once from a pinned Go wrapper module into the project cache.

Helm, etcd and kube-apiserver come from download sites this project's machines cannot reach,
but their sources are Go modules: a tiny wrapper module in the repository pins the upstream
version and ``go build`` compiles it. The build shows as one setup line (modules downloaded,
packages compiled) with Go's whole output in a log; a digest stamp next to the binary records
the wrapper module and link flags it was built from, so the binary is rebuilt only when they
change. Callers hold their own file lock around :meth:`GoBinary.build`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from deltawatch_tools.setup_step import Counter, run_step

# What `go build -v` prints: "go: downloading <module> <version>" per module fetched, then one
# import path per package compiled (compiler errors come under "# <package>" headers).
GO_COUNTERS = (
    Counter("modules downloaded", lambda line: line.startswith("go: downloading ")),
    Counter(
        "packages compiled",
        lambda line: bool(line.strip()) and not line.startswith(("#", " ", "\t", "go: ", "./")),
    ),
)


@dataclass(frozen=True)
class GoBinary:
    name: str
    source: Path
    """The wrapper module (go.mod, go.sum, a main or tools file)."""
    target: Path
    build_dir: Path
    """Where the module is copied to build: the repository may be read-only."""
    log: Path
    ldflags: tuple[str, ...] = ()
    package: str = "."
    flags: tuple[str, ...] = ()

    def source_digest(self) -> str:
        """SHA-256 over the wrapper module's files (names and bytes) and the link flags."""
        digest = hashlib.sha256("\0".join(self.ldflags).encode())
        for path in sorted(p for p in self.source.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            digest.update(b"\0" + path.relative_to(self.source).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def stamp(self) -> Path:
        return self.target.with_name(f"{self.name}.source-sha256")

    def is_current(self) -> bool:
        stamp = self.stamp()
        return (
            self.target.is_file()
            and stamp.is_file()
            and stamp.read_text().strip() == self.source_digest()
        )

    def build(self, go: str, title: str, progress: TextIO | None = sys.stderr) -> Path:
        """Build unconditionally; :class:`SetupStepError` (naming the log) if ``go`` fails.

        Written to a partial file and renamed, so a failed or killed build never leaves a
        binary that the stamp could vouch for."""
        digest = self.source_digest()
        if self.build_dir.exists():
            shutil.rmtree(self.build_dir)
        shutil.copytree(self.source, self.build_dir, ignore=shutil.ignore_patterns("__pycache__"))
        self.target.parent.mkdir(parents=True, exist_ok=True)
        partial = self.target.with_name(f".{self.name}.partial")
        command = [go, "build", "-v", *self.flags]
        if self.ldflags:
            command += ["-ldflags", " ".join(self.ldflags)]
        command += ["-o", str(partial), self.package]
        try:
            run_step(
                title, command, self.log, cwd=self.build_dir, stream=progress, counters=GO_COUNTERS
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, self.target)
        self.stamp().write_text(digest + "\n")
        return self.target
