"""Any replica answers any request (CONTRACT §9), and schemathesis, driven by the served
OpenAPI document, finds no server error."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.notifier.conftest import NotifierProcess
from tests.notifier.rest.conftest import rest_env, sample_body, subscriptions_path

pytestmark = pytest.mark.kafka


@pytest.fixture
def replicas(kafka_bootstrap: str, tmp_path: Path) -> Iterator[list[NotifierProcess]]:
    env = rest_env(kafka_bootstrap, "replicas")
    processes = [
        NotifierProcess(
            {**env, "DELTAWATCH_TRANSACTIONAL_ID": f"rest-{name}-{uuid.uuid4().hex[:8]}"},
            tmp_path / f"notifier-{name}.log",
        )
        for name in ("a", "b")
    ]
    try:
        for process in processes:
            process.start()
        yield processes
        for process in processes:
            assert process.stop() == 0
    finally:
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                process.kill()


def test_write_through_one_replica_read_through_the_other(
    replicas: list[NotifierProcess],
) -> None:
    a, b = (httpx.Client(base_url=r.base, timeout=30) for r in replicas)
    with a, b:
        for i in range(3):  # instances spread over partitions owned by either replica
            instance = f"inst-{i}-{uuid.uuid4().hex[:6]}"
            path = subscriptions_path(instance)
            created = a.post(path, json=sample_body("s"))
            assert created.status_code == 201, created.text
            # Immediately, without polling: the other replica's read catches up by itself.
            assert b.get(f"{path}/s").json() == created.json()
            assert b.get(path).json() == [created.json()]

            updated = b.put(f"{path}/s", json=sample_body("s", **{"min-notify-interval": 1}))
            assert updated.status_code == 200, updated.text
            assert a.get(f"{path}/s").json() == updated.json()

            assert b.post(path, json=sample_body("s")).status_code == 409
            assert a.delete(f"{path}/s").status_code == 202
            assert b.get(f"{path}/s").status_code == 404
            assert b.delete(f"{path}/s").status_code == 404


def test_schemathesis_finds_no_server_error(replicas: list[NotifierProcess]) -> None:
    completed = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{replicas[0].base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--request-timeout",
            "30",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts is not None, report[-3000:]
    assert int(counts.group(1)) >= 100, report[-3000:]
    assert counts.group(1) == counts.group(2), report[-3000:]
