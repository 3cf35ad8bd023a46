"""The runtime package stands alone: no module of it imports a worker or the developer tooling,
and no worker imports the tooling (a worker image ships neither ``deltawatch_tools`` nor the
other workers' code it does not need)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports, at any depth (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_of(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "gosrc" not in p.parts)


def offending(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in modules_of(package):
        bad = sorted(
            name
            for name in imported_modules(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        )
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_scan_sees_imports_of_every_form(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import services.differ\nfrom deltawatch_tools.cli import main\n"
        "def f():\n    import services.notifier.worker\n"
    )
    assert imported_modules(source) == {
        "services.differ",
        "deltawatch_tools.cli",
        "services.notifier.worker",
    }


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("deltawatch", ("services", "deltawatch_tools", "tests", "bench")),
        ("services", ("deltawatch_tools", "tests", "bench")),
    ],
)
def test_runtime_and_workers_never_import_tooling(package: str, forbidden: tuple[str, ...]) -> None:
    assert modules_of(package), f"no modules found under {package}/"
    assert offending(package, forbidden) == {}
