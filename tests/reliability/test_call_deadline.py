"""The guard the suite's broker outages called for: a call past its deadline ends the
process with exit 1 (so a restart recovers); a call within it changes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.reliability]

PROGRAM = """
import sys, time
from deltawatch.call_deadline import call_deadline
from deltawatch.logs import get_logger
with call_deadline(float(sys.argv[1]), "stuck_call", get_logger("test")):
    time.sleep(float(sys.argv[2]))
print("returned")
"""


def run(deadline_s: float, call_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, str(deadline_s), str(call_s)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_call_past_its_deadline_exits_1_and_says_which() -> None:
    result = run(deadline_s=0.3, call_s=20)
    assert result.returncode == 1
    assert "returned" not in result.stdout
    assert "stuck_call" in result.stdout + result.stderr


def test_a_call_within_its_deadline_returns() -> None:
    result = run(deadline_s=5, call_s=0.1)
    assert result.returncode == 0, result.stderr
    assert "returned" in result.stdout
