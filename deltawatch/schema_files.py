"""The contract's schema files, shipped inside this package and read as package data.

A worker installed from a wheel has no source tree next to it, so nothing may find a schema
through ``__file__`` and ``..``: :func:`importlib.resources.files` finds them wherever the
package lives (site-packages, an image, a checkout). The files themselves are in
``deltawatch/schemas/``; the repository's ``schemas/`` (the path CONTRACT.md names) is a link to
that directory. The generators that rewrite some of them from the models
(``services.notifier.json_schemas``, ``services.notifier.rest.openapi``) are developer commands
run in a checkout, and write into :data:`SOURCE_DIR`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

SOURCE_DIR = Path(__file__).resolve().parent / "schemas"


def schema_file(name: str) -> Traversable:
    """One file of ``schemas/`` (e.g. ``resource-event.avsc``), as the installed package has it."""
    return files("deltawatch") / "schemas" / name


def schema_names() -> list[str]:
    """Every schema file the package ships, sorted."""
    return sorted(entry.name for entry in (files("deltawatch") / "schemas").iterdir())


def load_schema_document(name: str) -> dict[str, Any]:
    """A JSON document of ``schemas/`` (a JSON Schema, the Avro schema, the OpenAPI document)."""
    loaded: dict[str, Any] = json.loads(schema_file(name).read_text(encoding="utf-8"))
    return loaded
