"""RFC 7386 merge patches and changed-leaf projections (CONTRACT §7 UPDATE and replace data)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.cps.merge_patch import (
    apply_merge_patch,
    changed_leaves,
    json_equal,
    merge_patch_diff,
)

POD_OLD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-0", "labels": {"app": "web", "tier": "front"}},
    "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
    "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
}
POD_NEW = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-0", "labels": {"app": "web", "canary": "yes"}},
    "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
    "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "podIP": "10.0.0.7",
    },
}


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        pytest.param({"a": 1}, {"a": 1}, {}, id="equal objects: empty patch"),
        pytest.param({"a": 1}, {"a": 2}, {"a": 2}, id="changed leaf"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, {"b": 2}, id="added member"),
        pytest.param({"a": 1, "b": 2}, {"a": 1}, {"b": None}, id="removed member is null"),
        pytest.param(
            {"a": {"b": {"c": 1, "d": 2}}},
            {"a": {"b": {"c": 1, "d": 3}}},
            {"a": {"b": {"d": 3}}},
            id="nested change keeps only the path",
        ),
        pytest.param({"a": {"b": 1}}, {"a": {}}, {"a": {"b": None}}, id="nested removal"),
        pytest.param({"a": [1, 2, 3]}, {"a": [1, 2]}, {"a": [1, 2]}, id="array replaced whole"),
        pytest.param(
            {"a": [{"x": 1}]}, {"a": [{"x": 2}]}, {"a": [{"x": 2}]}, id="array of objects"
        ),
        pytest.param({"a": {"b": 1}}, {"a": "flat"}, {"a": "flat"}, id="object becomes leaf"),
        pytest.param({"a": "flat"}, {"a": {"b": 1}}, {"a": {"b": 1}}, id="leaf becomes object"),
        pytest.param({"a": 1}, {"a": 1.0}, {}, id="1 and 1.0 are the same JSON number"),
        pytest.param({"a": 1}, {"a": True}, {"a": True}, id="true is not 1"),
        pytest.param({"a": None}, {}, {"a": None}, id="null member dropped"),
        pytest.param([1], {"a": 1}, {"a": 1}, id="non-object old: patch is new"),
        pytest.param({"a": 1}, [1], [1], id="non-object new: patch is new"),
    ],
)
def test_merge_patch_diff(old: Any, new: Any, patch: Any) -> None:
    assert merge_patch_diff(old, new) == patch
    assert json_equal(apply_merge_patch(old, patch), new)


def test_pod_update_patch_holds_only_changed_leaves() -> None:
    patch = merge_patch_diff(POD_OLD, POD_NEW)
    assert patch == {
        "metadata": {"labels": {"tier": None, "canary": "yes"}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "podIP": "10.0.0.7",
        },
    }
    assert apply_merge_patch(POD_OLD, patch) == POD_NEW


def test_inputs_are_not_mutated() -> None:
    old = {"a": {"b": 1}, "keep": [1]}
    new = {"a": {"b": 2}, "keep": [1], "add": {"x": [1]}}
    old_copy, new_copy = repr(old), repr(new)
    patch = merge_patch_diff(old, new)
    patch["add"]["x"].append(2)
    apply_merge_patch(old, {"a": {"b": None}})
    changed_leaves(old, new)
    assert (repr(old), repr(new)) == (old_copy, new_copy)


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        # The RFC 7386 Appendix A examples.
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_apply_merge_patch_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    assert apply_merge_patch(target, patch) == result


@pytest.mark.parametrize(
    ("old", "new", "source", "target"),
    [
        pytest.param({"a": 1, "b": 2}, {"a": 1, "b": 3}, {"b": 2}, {"b": 3}, id="changed leaf"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, {}, {"b": 2}, id="added only in target"),
        pytest.param({"a": 1, "b": 2}, {"a": 1}, {"b": 2}, {}, id="removed only in source"),
        pytest.param(
            {"s": {"phase": "Pending", "ip": None, "n": 1}},
            {"s": {"phase": "Running", "n": 1}},
            {"s": {"phase": "Pending", "ip": None}},
            {"s": {"phase": "Running"}},
            id="nested",
        ),
        pytest.param({"a": [1, 2]}, {"a": [2, 1]}, {"a": [1, 2]}, {"a": [2, 1]}, id="arrays whole"),
        pytest.param(
            {"m": {"l": {"x": "1", "y": "2"}}},
            {"m": {"l": {"x": "1"}}},
            {"m": {"l": {"y": "2"}}},
            {},
            id="removal only: no empty path on the target side",
        ),
        pytest.param({"a": {"b": 1}}, {"a": {}}, {"a": {"b": 1}}, {}, id="emptied object"),
        pytest.param({"a": 1}, {"a": 1, "b": {}}, {}, {"b": {}}, id="added empty object kept"),
        pytest.param({"a": 1}, {"a": 1}, {}, {}, id="equal"),
        pytest.param("x", "y", "x", "y", id="non-objects"),
    ],
)
def test_changed_leaves(old: Any, new: Any, source: Any, target: Any) -> None:
    assert changed_leaves(old, new) == (source, target)


_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
_keys = st.text(alphabet="abcde", min_size=1, max_size=2)
_arrays = st.lists(st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)), max_size=3)


def _json(allow_null_members: bool) -> st.SearchStrategy[Any]:
    """JSON-like values. Without null members: RFC 7386 cannot *set* a member to null."""
    leaves = _scalars if allow_null_members else _scalars.filter(lambda v: v is not None)

    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return _arrays | st.dictionaries(_keys, children, max_size=4)

    return st.recursive(leaves | _arrays, containers, max_leaves=12)


@given(old=_json(allow_null_members=True), new=_json(allow_null_members=False))
def test_round_trip_apply_diff_gives_new(old: Any, new: Any) -> None:
    """``apply(old, diff(old, new)) == new`` for every ``new`` without null members.

    ``old`` may hold nulls anywhere (they are simply removed or replaced); ``new`` may hold
    nulls inside arrays only, which RFC 7386 carries as part of the whole array.
    """
    assert json_equal(apply_merge_patch(old, merge_patch_diff(old, new)), new)


@given(old=_json(allow_null_members=False), new=_json(allow_null_members=False))
def test_changed_leaves_are_the_merge_patches_without_removals(old: Any, new: Any) -> None:
    """``target`` is the patch old→new minus its removal nulls; ``source`` the patch new→old."""
    if isinstance(old, dict):
        assert merge_patch_diff(old, old) == {}
        assert changed_leaves(old, old) == ({}, {})
    source, target = changed_leaves(old, new)
    assert json_equal(target, _without_null_members(merge_patch_diff(old, new)))
    assert json_equal(source, _without_null_members(merge_patch_diff(new, old)))


def _without_null_members(value: Any) -> Any:
    """The patch without removals, and without objects that held nothing but removals."""
    if not isinstance(value, dict):
        return value
    kept = {}
    for name, member in value.items():
        stripped = _without_null_members(member)
        if member is None or (isinstance(member, dict) and member and not stripped):
            continue
        kept[name] = stripped
    return kept
