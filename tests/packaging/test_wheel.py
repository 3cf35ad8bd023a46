"""A built wheel, installed into a fresh virtualenv, gives working ``deltawatch*`` commands.

This is the test of what the images and ``pip install .`` rely on: nothing may read a file of the
checkout. So it builds the wheel from a copy of the sources the wheel is made from (the checkout
itself stays untouched by ``build/`` and ``*.egg-info``), installs it with its declared
dependencies only (resolved from the package index, as a user's ``pip install`` would) into a
virtualenv of its own, and runs the commands from a directory that holds no source: every module
must import (a dependency used but not declared fails here), every console script must resolve,
and every schema must load from the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from deltawatch.schema_files import SOURCE_DIR

ROOT = Path(__file__).resolve().parents[2]
WHEEL_SOURCES = ("pyproject.toml", "README.md", "deltawatch", "deltawatch_tools", "services")
UNUSED_DEPENDENCIES = ("fastapi", "tenacity")

# Run inside the fresh virtualenv: imports every module of the three packages (the
# ``__main__`` modules through their console scripts, as they run on import), loads every
# schema through the package, and prints where the packages came from.
PROBE = textwrap.dedent(
    """
    import importlib, importlib.metadata, json, pkgutil
    import deltawatch, deltawatch_tools, services
    from deltawatch.avro_serde import AvroSerde
    from deltawatch.schema_files import load_schema_document, schema_names

    modules = [
        info.name
        for package in (deltawatch, deltawatch_tools, services)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not info.name.endswith(".__main__")
    ]
    for name in modules:
        importlib.import_module(name)
    scripts = {
        ep.name: ep.load().__module__
        for ep in importlib.metadata.distribution("deltawatch").entry_points
        if ep.group == "console_scripts"
    }
    names = schema_names()
    documents = {n: load_schema_document(n) for n in names if n.endswith((".json", ".avsc"))}
    assert "asyncapi.yaml" in names
    serde = AvroSerde.from_file("resource-event.avsc", "t", None)
    print(json.dumps({
        "files": [m.__file__ for m in (deltawatch, deltawatch_tools, services)],
        "modules": len(modules),
        "scripts": scripts,
        "schemas": names,
        "documents": len(documents),
        "avro": serde.schema.raw["name"],
    }))
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh virtualenv with the wheel installed; its ``bin/`` is returned."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in WHEEL_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(source)], work)
    (wheel,) = (work / "dist").glob("deltawatch-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    _run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile",
          str(wheel)], work)  # fmt: skip
    shutil.rmtree(source)
    return venv / "bin"


def _run(command: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def test_wheel_ships_every_schema_file(installed: Path) -> None:
    (wheel,) = (installed.parents[1] / "dist").glob("deltawatch-*.whl")
    shipped = {
        Path(name).name
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith("deltawatch/schemas/")
    }
    assert shipped == {path.name for path in SOURCE_DIR.iterdir()}


def test_installed_commands_work_without_the_checkout(installed: Path) -> None:
    probe = json.loads(_run([str(installed / "python"), "-c", PROBE], installed))
    site = str(installed.parent)
    assert all(path.startswith(site) for path in probe["files"]), probe["files"]
    assert probe["modules"] > 50
    assert probe["scripts"] == {
        "deltawatch": "deltawatch_tools.cli",
        "deltawatch-watcher": "services.watcher.__main__",
        "deltawatch-differ": "services.differ.__main__",
        "deltawatch-notifier": "services.notifier.__main__",
    }
    assert probe["schemas"] == sorted(path.name for path in SOURCE_DIR.iterdir())
    assert probe["avro"] == "ResourceEvent"
    assert "kafka" in _run([str(installed / "deltawatch"), "--help"], installed)


def test_no_unused_dependency_is_installed(installed: Path) -> None:
    found = _run(
        [str(installed / "python"), "-c",
         "import importlib.util, sys; "
         "print(' '.join(n for n in sys.argv[1:] if importlib.util.find_spec(n)))",
         *UNUSED_DEPENDENCIES],
        installed,
    )  # fmt: skip
    assert found.split() == []
