"""Each worker serves /metrics, /healthz, /readyz and exits 0 on SIGTERM (CONTRACT §1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from deltawatch_tools.local_state import free_port

pytestmark = pytest.mark.kafka


def _wait_for(url: str, status: int, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == status:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}; last {last}")


@pytest.mark.parametrize("worker", ["differ", "notifier"])
def test_health_endpoints_and_sigterm(worker: str, topic_env: dict[str, str]) -> None:
    port = free_port()
    env = {**os.environ, **topic_env, "DELTAWATCH_HTTP_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", f"services.{worker}"], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_for(f"{base}/healthz", 200).json()["alive"] is True
        ready = _wait_for(f"{base}/readyz", 200)
        assert ready.json() == {"ready": True, "waiting-for": []}
        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "process_cpu_seconds_total" in metrics.text or "python_info" in metrics.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_readyz_is_503_while_kafka_is_unreachable(topic_env: dict[str, str]) -> None:
    port = free_port()
    env = {
        **os.environ,
        **topic_env,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "DELTAWATCH_HTTP_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.differ"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/healthz", 200)
        response = httpx.get(f"{base}/readyz", timeout=5)
        assert response.status_code == 503
        assert "kafka" in response.json()["waiting-for"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
