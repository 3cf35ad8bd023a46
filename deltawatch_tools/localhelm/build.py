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

import os
import shutil
import sys
from pathlib import Path
from typing import TextIO

from deltawatch_tools.go_build import GoBinary
from deltawatch_tools.local_state import cache_dir, file_lock
from deltawatch_tools.setup_step import SetupStepError

HELM_VERSION = "v4.3.2"
HELM_PACKAGE = "helm.sh/helm/v4/cmd/helm"
GOSRC_DIR = Path(__file__).resolve().parent / "gosrc" / "helm"
_LDFLAGS = (f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}", "-s", "-w")


class HelmBuildError(RuntimeError):
    """Go is missing or ``go build`` of Helm failed; the message names the log."""


def helm_cache_dir() -> Path:
    return cache_dir() / "helm"


def helm_build() -> GoBinary:
    root = helm_cache_dir()
    return GoBinary(
        name="helm",
        source=GOSRC_DIR,
        target=root / "bin" / "helm",
        build_dir=root / "build",
        log=root / "build.log",
        ldflags=_LDFLAGS,
        package=HELM_PACKAGE,
        flags=("-trimpath",),
    )


def build_helm(progress: TextIO | None = sys.stderr) -> Path:
    """Build the binary unconditionally; the caller holds the build lock."""
    go = shutil.which("go")
    if go is None:
        raise HelmBuildError("helm is not on PATH, and building it needs Go on PATH")
    title = f"[deltawatch helm] building helm {HELM_VERSION} from Go modules (first run only)"
    try:
        return helm_build().build(go, title, progress)
    except SetupStepError as exc:
        raise HelmBuildError(f"go build of helm failed: {exc}") from None


def ensure_helm(progress: TextIO | None = sys.stderr) -> Path:
    """``DELTAWATCH_HELM``, else ``helm`` on PATH, else the cached build (built if needed)."""
    named = os.environ.get("DELTAWATCH_HELM")
    if named:
        return Path(named)
    found = shutil.which("helm")
    if found is not None:
        return Path(found)
    binary = helm_build()
    if not binary.is_current():
        with file_lock(helm_cache_dir() / "build.lock"):
            if not binary.is_current():  # checked again: another process may have just built it
                build_helm(progress)
    return binary.target
