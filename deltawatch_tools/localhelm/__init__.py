"""Helm, built from Go modules when it is not on PATH (as ``localkube`` builds kube-apiserver).

The chart tier (``tests/deploy``) runs the real ``helm lint`` and ``helm template``; this
package finds ``helm`` on PATH or builds the pinned version into the cache once.
"""

from deltawatch_tools.localhelm.build import HELM_VERSION, HelmBuildError, ensure_helm

__all__ = ["HELM_VERSION", "HelmBuildError", "ensure_helm"]
