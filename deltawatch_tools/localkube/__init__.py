"""A real local Kubernetes API server (etcd + kube-apiserver built from Go modules).

deltawatch's tests and demo run against the real API server rather than a fake, the way
controller projects use envtest: no kubelet, no controllers, no Docker, no cluster. The
binaries are built once into a cache outside the repository (``build``); ``server`` starts,
finds, restarts and stops them; ``ops`` holds the dict-in/dict-out calls tests and the demo
use to play stories against them (no controller creates ReplicaSets or Pods for us).
"""

from deltawatch_tools.localkube.build import KubeBinaries, KubeBuildError, ensure_binaries
from deltawatch_tools.localkube.server import (
    KubeNotRunningError,
    KubeOptions,
    KubeServerError,
    KubeStatus,
    LocalKubeServer,
    default_state_dir,
)

__all__ = [
    "KubeBinaries",
    "KubeBuildError",
    "KubeNotRunningError",
    "KubeOptions",
    "KubeServerError",
    "KubeStatus",
    "LocalKubeServer",
    "default_state_dir",
    "ensure_binaries",
]
