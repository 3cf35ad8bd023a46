"""The compose stack's notifier gets a ``DELTAWATCH_SECRET_KEY`` by default (issue 22).

Needs no Docker: the one-shot ``compose/secret-key/ensure_secret_key.py`` runs here as the
stack runs it, against a file in a temporary directory instead of the volume, and the
notifier's entrypoint from ``compose/docker-compose.yml`` runs under ``sh`` with a stand-in
``deltawatch-worker`` that loads the notifier's real settings, so the whole chain (given or
generated key → file → entrypoint → settings) is what is checked. That the stack really signs
is checked in ``test_stack.py`` against the running stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

pytestmark = pytest.mark.compose

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
SCRIPT = COMPOSE_DIR / "secret-key" / "ensure_secret_key.py"
VOLUME_DIR = "/var/lib/deltawatch"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    return loaded["services"]


def _one_shot(key_file: Path, given: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DELTAWATCH_SECRET_KEY"}
    env["SECRET_KEY_FILE"] = str(key_file)
    if given is not None:
        env["DELTAWATCH_SECRET_KEY"] = given
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_key_is_generated_once_and_then_kept(tmp_path: Path) -> None:
    key_file = tmp_path / "secret-key"
    first = _one_shot(key_file)
    assert first.returncode == 0, first.stderr
    key = key_file.read_text().strip()
    Fernet(key.encode())  # a valid Fernet key, or this raises
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key not in first.stdout + first.stderr
    again = _one_shot(key_file)
    assert again.returncode == 0, again.stderr
    assert key_file.read_text().strip() == key
    assert "kept" in again.stdout


def test_a_given_key_wins_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret-key"
    assert _one_shot(key_file).returncode == 0
    mine = Fernet.generate_key().decode()
    given = _one_shot(key_file, mine)
    assert given.returncode == 0, given.stderr
    assert key_file.read_text().strip() == mine
    assert mine not in given.stdout + given.stderr
    refused = _one_shot(key_file, "not-a-key")
    assert refused.returncode == 2
    assert "DELTAWATCH_SECRET_KEY is not a Fernet key" in refused.stderr
    assert key_file.read_text().strip() == mine


def test_the_one_shot_writes_where_the_notifier_reads(services: dict[str, Any]) -> None:
    one_shot, notifier = services["secret-key"], services["notifier"]
    assert one_shot["environment"]["SECRET_KEY_FILE"] == f"{VOLUME_DIR}/secret-key"
    assert one_shot["environment"]["DELTAWATCH_SECRET_KEY"] == "${DELTAWATCH_SECRET_KEY:-}"
    source, target = one_shot["volumes"][0].split(":")[:2]
    assert one_shot["command"] == ["python", f"{target}/{SCRIPT.name}"]
    assert COMPOSE_DIR / source.removeprefix("./") == SCRIPT.parent
    volume = f"{one_shot['volumes'][1].split(':')[0]}:{VOLUME_DIR}"
    assert one_shot["volumes"][1] == volume
    assert f"{volume}:ro" in notifier["volumes"]
    condition = notifier["depends_on"]["secret-key"]["condition"]
    assert condition == "service_completed_successfully"
    assert one_shot["build"] == notifier["build"]  # the notifier's image: it has cryptography
    assert "DELTAWATCH_SECRET_KEY" not in notifier["environment"]  # the file is the one source


def test_the_notifier_entrypoint_hands_the_key_to_the_notifier_settings(
    services: dict[str, Any], tmp_path: Path
) -> None:
    key_file = tmp_path / "secret-key"
    assert _one_shot(key_file).returncode == 0
    # The entrypoint as the container runs it (Compose turns $$ into $), reading the temporary
    # file instead of the volume, and a deltawatch-worker that reports what the notifier's
    # settings read from its environment.
    shell, flag, script = services["notifier"]["entrypoint"]
    assert (shell, flag) == ("sh", "-c")
    script = script.replace("$$", "$").replace(f"{VOLUME_DIR}/secret-key", str(key_file))
    worker = tmp_path / "bin" / "deltawatch-worker"
    worker.parent.mkdir()
    worker.write_text(
        f"#!{sys.executable}\n"
        "from deltawatch.settings import NotifierSettings, load_settings\n"
        "key = load_settings(NotifierSettings).secret_key\n"
        "print(key.get_secret_value() if key else 'no key')\n"
    )
    worker.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DELTAWATCH_SECRET_KEY"}
    env["PATH"] = f"{worker.parent}:{env['PATH']}"
    result = subprocess.run(
        [shell, flag, script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == key_file.read_text().strip()
