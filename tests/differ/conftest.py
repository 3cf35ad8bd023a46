"""Fixtures of the differ's process tests; each module defines ``env`` (its topics)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.differ.harness import DifferProcess, TopicReader


@pytest.fixture
def deltas(env: dict[str, str]) -> Iterator[TopicReader]:
    """A ``read_committed`` reader of the module's deltas topic."""
    reader = TopicReader(env["KAFKA_BOOTSTRAP_SERVERS"], env["DELTAWATCH_DELTAS_TOPIC"])
    yield reader
    reader.close()


@pytest.fixture
def processes() -> Iterator[list[DifferProcess]]:
    """Differ processes a test started (:func:`tests.differ.harness.launch`), killed at its end."""
    started: list[DifferProcess] = []
    yield started
    for process in started:
        process.kill()
