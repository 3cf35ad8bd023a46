"""include-patch: each told modification carries the merge patch from what was last told."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.cps.merge_patch import apply_merge_patch
from services.notifier.net_delta import NetDelta, ResourceChanges
from services.notifier.told_objects import ToldObjects


def entry(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "web",
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": obj,
    }


def test_the_patch_is_from_the_told_object_to_the_new_one() -> None:
    told = ToldObjects()
    told.tell(ResourceChanges(created=(entry({"spec": {"a": 1, "b": 2}}),)))
    out = told.tell(ResourceChanges(modified=(entry({"spec": {"a": 1, "c": 3}}),)))
    assert out.modified[0]["patch"] == {"spec": {"b": None, "c": 3}}
    assert out.modified[0]["status"] == {"spec": {"a": 1, "c": 3}}


def test_baseline_a_resource_never_told_of_is_patched_from_nothing() -> None:
    out = ToldObjects().tell(ResourceChanges(modified=(entry({"spec": {"a": 1}}),)))
    assert out.modified[0]["patch"] == {"spec": {"a": 1}}


def test_a_delete_forgets_the_told_object() -> None:
    told = ToldObjects()
    told.tell(ResourceChanges(created=(entry({"a": 1}),)))
    told.tell(ResourceChanges(deleted=(entry({"a": 1}),)))
    assert told.objects == {}


objects = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(
        st.integers(0, 3),
        st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2),
    ),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(first=objects, windows=st.lists(st.lists(objects, min_size=1, max_size=4), max_size=5))
def test_applying_the_told_patches_in_order_to_the_baseline_gives_the_current_object(
    first: dict[str, Any], windows: list[list[dict[str, Any]]]
) -> None:
    """Each window's modifications coalesce (NetDelta) into one net patch; a reader that
    applies the patches it was told, in order, to the object it was first told of, holds
    the current object after every callback."""
    told = ToldObjects()
    told.tell(ResourceChanges(created=(entry(first),)))
    reader: Any = first
    for window in windows:
        net = NetDelta()
        for obj in window:
            net.add(ResourceChanges(modified=(entry(obj),)))
        out = told.tell(net.net())
        for modified in out.modified:
            reader = apply_merge_patch(reader, modified["patch"])
        assert reader == window[-1]
