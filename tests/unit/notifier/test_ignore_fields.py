"""ignore-fields: a change only in ignored paths is not a modification."""

from __future__ import annotations

from typing import Any

from services.notifier.ignore_fields import IgnoreFieldsFilter, strip
from services.notifier.net_delta import ResourceChanges


def pod(phase: str, restarts: int = 0, note: str = "") -> dict[str, Any]:
    return {
        "name": "web-0",
        "namespace": "ns",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {
            "metadata": {"name": "web-0", "annotations": {"note": note}},
            "status": {"phase": phase, "restarts": restarts},
        },
    }


def test_strip_removes_nested_paths_and_ignores_missing_ones() -> None:
    document = {"a": {"b": 1, "c": 2}, "d": 3}
    assert strip(document, ["a.b", "x.y", "d.e"]) == {"a": {"c": 2}, "d": 3}
    assert document == {"a": {"b": 1, "c": 2}, "d": 3}


def test_changes_in_ignored_paths_alone_are_dropped() -> None:
    flt = IgnoreFieldsFilter(("metadata.annotations", "status.restarts"))
    flt.apply(ResourceChanges(created=(pod("Running"),)))
    only_ignored = flt.apply(ResourceChanges(modified=(pod("Running", 3, "x"),)))
    assert only_ignored.modified == ()
    real = flt.apply(ResourceChanges(modified=(pod("Failed", 4),)))
    assert real.modified == (pod("Failed", 4),)


def test_first_modification_of_an_unseen_resource_counts() -> None:
    flt = IgnoreFieldsFilter(("metadata.annotations",))
    assert flt.apply(ResourceChanges(modified=(pod("Running", note="a"),))).modified
    assert not flt.apply(ResourceChanges(modified=(pod("Running", note="b"),))).modified


def test_delete_forgets_the_fingerprint() -> None:
    flt = IgnoreFieldsFilter(("metadata.annotations",))
    flt.apply(ResourceChanges(created=(pod("Running"),)))
    flt.apply(ResourceChanges(deleted=(pod("Running"),)))
    assert flt.seen == {}
