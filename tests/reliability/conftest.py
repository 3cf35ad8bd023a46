"""Fixtures of the reliability suite: a pipeline run on the shared broker and API server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.reliability.pipeline_run import PipelineRun

MakeRun = Callable[..., PipelineRun]


@pytest.fixture
def make_run(topic_env: dict[str, str], tmp_path: Path, kube_namespace: str) -> Iterator[MakeRun]:
    """``make_run(kubeconfig, replicas=None, **env)`` starts the workers (not yet ready)."""
    runs: list[PipelineRun] = []

    def make(kubeconfig: Path, replicas: dict[str, int] | None = None, **env: str) -> PipelineRun:
        run = PipelineRun(
            {
                **topic_env,
                "KUBECONFIG": str(kubeconfig),
                "DELTAWATCH_NAMESPACES": kube_namespace,
                **env,
            },
            tmp_path,
            replicas,
        )
        runs.append(run)
        return run

    try:
        yield make
    finally:
        for run in runs:
            run.stop_all()
            print(run.log_tails())
