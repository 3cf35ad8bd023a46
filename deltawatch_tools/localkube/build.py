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

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from deltawatch_tools.go_build import GoBinary
from deltawatch_tools.local_state import cache_dir, file_lock
from deltawatch_tools.setup_step import SetupStepError

KUBERNETES_VERSION = "v1.32.13"

GOSRC_DIR = Path(__file__).resolve().parent / "gosrc"

_LDFLAGS: dict[str, tuple[str, ...]] = {
    "etcd": (),
    "kube-apiserver": (
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMinor=32",
    ),
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


def component_build(component: str) -> GoBinary:
    build_root = kube_cache_dir() / "build"
    return GoBinary(
        name=component,
        source=GOSRC_DIR / component,
        target=bin_dir() / component,
        build_dir=build_root / component,
        log=build_root / f"{component}.log",
        ldflags=_LDFLAGS[component],
    )


def build_component(component: str, progress: TextIO | None = sys.stderr) -> Path:
    """Build one binary unconditionally; return its path. Caller holds the build lock."""
    go = shutil.which("go")
    if go is None:
        raise KubeBuildError(
            "the local Kubernetes API server is built from source and needs Go >= 1.23 on PATH"
        )
    title = f"[deltawatch kube] building {component} from Go modules (first run only)"
    try:
        return component_build(component).build(go, title, progress)
    except SetupStepError as exc:
        raise KubeBuildError(f"go build of {component} failed: {exc}") from None


def ensure_binaries(progress: TextIO | None = sys.stderr) -> KubeBinaries:
    """Return the two binaries, building whichever is missing or out of date."""
    if not all(component_build(c).is_current() for c in COMPONENTS):
        with file_lock(kube_cache_dir() / "build.lock"):
            for component in COMPONENTS:
                # Checked again under the lock: another process may have just built it.
                if not component_build(component).is_current():
                    build_component(component, progress)
    return KubeBinaries(etcd=bin_dir() / "etcd", kube_apiserver=bin_dir() / "kube-apiserver")
