"""Build etcd and kube-apiserver from Go modules into a cache outside the repository.

The tests and the demo run against the real Kubernetes API server, the way envtest does, but
without downloading release tarballs or needing Docker: the two tiny wrapper modules in
``gosrc/`` pin upstream versions, and ``go build`` fetches and compiles them. The first build
takes minutes (about 90 MiB of module zips, thousands of packages), so it shows as one line
counting modules and packages, with Go's whole output in ``build/<component>.log`` of the cache
(named when the build fails); later builds reuse Go's module and build caches. A binary is
rebuilt only when missing or when the content of its wrapper module (or the build flags)
changed, which a digest stamp next to the binary records. A file lock keeps two processes
from building at the same time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from deltawatch_tools.local_state import cache_dir, file_lock
from deltawatch_tools.setup_step import Counter, SetupStepError, run_step

KUBERNETES_VERSION = "v1.32.13"

GOSRC_DIR = Path(__file__).resolve().parent / "gosrc"

_LDFLAGS: dict[str, list[str]] = {
    "etcd": [],
    "kube-apiserver": [
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMinor=32",
    ],
}
COMPONENTS = tuple(_LDFLAGS)


class KubeBuildError(RuntimeError):
    """Go is missing or ``go build`` failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class KubeBinaries:
    etcd: Path
    kube_apiserver: Path


def kube_cache_dir() -> Path:
    return cache_dir() / "kube"


def bin_dir() -> Path:
    return kube_cache_dir() / "bin"


def source_digest(component: str) -> str:
    """SHA-256 over the wrapper module's files (names and bytes) and its link flags."""
    digest = hashlib.sha256()
    digest.update("\0".join(_LDFLAGS[component]).encode())
    root = GOSRC_DIR / component
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts:
            continue
        digest.update(b"\0" + path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp_path(component: str) -> Path:
    return bin_dir() / f"{component}.source-sha256"


def is_current(component: str) -> bool:
    binary = bin_dir() / component
    stamp = _stamp_path(component)
    return (
        binary.is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == source_digest(component)
    )


def _go_executable() -> str:
    go = shutil.which("go")
    if go is None:
        raise KubeBuildError(
            "the local Kubernetes API server is built from source and needs Go >= 1.23 on PATH"
        )
    return go


# What `go build -v` prints: "go: downloading <module> <version>" per module fetched, then one
# import path per package compiled (compiler errors come under "# <package>" headers).
_GO_COUNTERS = (
    Counter("modules downloaded", lambda line: line.startswith("go: downloading ")),
    Counter(
        "packages compiled",
        lambda line: bool(line.strip()) and not line.startswith(("#", " ", "\t", "go: ", "./")),
    ),
)


def build_log(component: str) -> Path:
    return kube_cache_dir() / "build" / f"{component}.log"


def build_component(component: str, progress: TextIO | None = sys.stderr) -> Path:
    """Build one binary unconditionally; return its path. Caller holds the build lock."""
    go = _go_executable()
    build_dir = kube_cache_dir() / "build" / component
    if build_dir.exists():
        shutil.rmtree(build_dir)
    shutil.copytree(GOSRC_DIR / component, build_dir, ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir().mkdir(parents=True, exist_ok=True)
    target = bin_dir() / component
    partial = bin_dir() / f".{component}.partial"
    command = [go, "build", "-v", "-o", str(partial)]
    if _LDFLAGS[component]:
        command += ["-ldflags", " ".join(_LDFLAGS[component])]
    command.append(".")
    digest = source_digest(component)
    title = f"[deltawatch kube] building {component} from Go modules (first run only)"
    try:
        run_step(
            title,
            command,
            build_log(component),
            cwd=build_dir,
            stream=progress,
            counters=_GO_COUNTERS,
        )
    except SetupStepError as exc:
        partial.unlink(missing_ok=True)
        raise KubeBuildError(f"go build of {component} failed: {exc}") from None
    os.replace(partial, target)
    _stamp_path(component).write_text(digest + "\n")
    return target


def ensure_binaries(progress: TextIO | None = sys.stderr) -> KubeBinaries:
    """Return the two binaries, building whichever is missing or out of date."""
    if not all(is_current(c) for c in COMPONENTS):
        with file_lock(kube_cache_dir() / "build.lock"):
            for component in COMPONENTS:
                # Checked again under the lock: another process may have just built it.
                if not is_current(component):
                    build_component(component, progress)
    return KubeBinaries(etcd=bin_dir() / "etcd", kube_apiserver=bin_dir() / "kube-apiserver")
