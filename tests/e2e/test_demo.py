"""README's first command, with two clusters: ``deltawatch demo --clusters 2`` as a user types it.

The demo starts two named local API servers, one watcher per cluster and one differ and
notifier, plays the same story in both, and prints every callback with the cluster of each
change. Run on fresh topics of the test broker so that no earlier run's records are replayed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deltawatch_tools.localkube import LocalKubeServer, default_state_dir

pytestmark = pytest.mark.kube


def test_the_demo_plays_its_story_in_two_clusters_and_names_them(
    topic_env: dict[str, str],
) -> None:
    deltawatch = str(Path(sys.executable).with_name("deltawatch"))
    already = {n: LocalKubeServer(default_state_dir(n)).is_running() for n in ("east", "west")}
    demo = subprocess.run(
        [deltawatch, "demo", "--clusters", "2", "--step-pause", "0", "--interval", "0"],
        env={**os.environ, **topic_env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    told = re.findall(r"(\w+)/([\w-]+)@(\w+)", demo.stdout)
    for cluster in ("east", "west"):
        kinds = {kind for kind, _name, where in told if where == cluster}
        assert {"Deployment", "ReplicaSet", "Pod", "ConfigMap", "Service"} <= kinds, demo.stdout
    # The same namespace/name in both clusters are two resources, each told with its cluster.
    assert {("Deployment", "web", "east"), ("Deployment", "web", "west")} <= set(told)
    for name, was_running in already.items():
        if not was_running:
            assert not LocalKubeServer(default_state_dir(name)).is_running(), "left running"
