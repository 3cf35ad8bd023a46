"""Build Helm from Go modules into the project cache, once.

Helm's release binaries come from a download site this project's machines cannot reach, but
its source is a Go module: the wrapper module in ``gosrc/helm`` pins ``helm.sh/helm/v4`` and
``go build`` compiles its ``cmd/helm``. The build shows as one setup line (modules
downloaded, packages compiled) with Go's whole output in ``helm/build.log`` of the cache; the
binary is rebuilt only when the wrapper module or the link flags change (a digest stamp next to
it records them), under a file lock so two processes never build at once. A ``helm`` already on
PATH is used as it is, whatever its version (``DELTAWATCH_HELM`` names another one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import TextIO

from deltawatch_tools.local_state import cache_dir, file_lock
from deltawatch_tools.setup_step import Counter, SetupStepError, run_step

HELM_VERSION = "v4.3.2"
HELM_PACKAGE = "helm.sh/helm/v4/cmd/helm"
GOSRC_DIR = Path(__file__).resolve().parent / "gosrc" / "helm"
_LDFLAGS = (f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}", "-s", "-w")

_GO_COUNTERS = (
    Counter("modules downloaded", lambda line: line.startswith("go: downloading ")),
    Counter(
        "packages compiled",
        lambda line: bool(line.strip()) and not line.startswith(("#", " ", "\t", "go: ", "./")),
    ),
)


class HelmBuildError(RuntimeError):
    """Go is missing or ``go build`` of Helm failed; the message names the log."""


def helm_cache_dir() -> Path:
    return cache_dir() / "helm"


def helm_binary() -> Path:
    return helm_cache_dir() / "bin" / "helm"


def build_log() -> Path:
    return helm_cache_dir() / "build.log"


def source_digest() -> str:
    """SHA-256 over the wrapper module's files and the link flags."""
    digest = hashlib.sha256("\0".join(_LDFLAGS).encode())
    for path in sorted(p for p in GOSRC_DIR.iterdir() if p.is_file()):
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _stamp() -> Path:
    return helm_binary().with_name("helm.source-sha256")


def is_current() -> bool:
    stamp = _stamp()
    return (
        helm_binary().is_file() and stamp.is_file() and stamp.read_text().strip() == source_digest()
    )


def build_helm(progress: TextIO | None = sys.stderr) -> Path:
    """Build the binary unconditionally; the caller holds the build lock."""
    go = shutil.which("go")
    if go is None:
        raise HelmBuildError("helm is not on PATH, and building it needs Go on PATH")
    build_dir = helm_cache_dir() / "build"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    shutil.copytree(GOSRC_DIR, build_dir)
    target = helm_binary()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(".helm.partial")
    command = [go, "build", "-v", "-trimpath", "-ldflags", " ".join(_LDFLAGS)]
    command += ["-o", str(partial), HELM_PACKAGE]
    try:
        run_step(
            f"[deltawatch helm] building helm {HELM_VERSION} from Go modules (first run only)",
            command,
            build_log(),
            cwd=build_dir,
            stream=progress,
            counters=_GO_COUNTERS,
        )
    except SetupStepError as exc:
        partial.unlink(missing_ok=True)
        raise HelmBuildError(f"go build of helm failed: {exc}") from None
    os.replace(partial, target)
    _stamp().write_text(source_digest() + "\n")
    return target


def ensure_helm(progress: TextIO | None = sys.stderr) -> Path:
    """``DELTAWATCH_HELM``, else ``helm`` on PATH, else the cached build (built if needed)."""
    named = os.environ.get("DELTAWATCH_HELM")
    if named:
        return Path(named)
    found = shutil.which("helm")
    if found is not None:
        return Path(found)
    if not is_current():
        with file_lock(helm_cache_dir() / "build.lock"):
            if not is_current():  # checked again: another process may have just built it
                build_helm(progress)
    return helm_binary()
