"""JSON merge patches (RFC 7386) and changed-leaf projections between two Kubernetes objects.

CONTRACT §7 describes a modified resource to CPS consumers in two ways, both computed here so
the two formats can never disagree about what changed:

* the ``delta`` format's UPDATE payload is the RFC 7386 merge patch *from* the old object *to*
  the new one (:func:`merge_patch_diff`); a consumer holding the old object gets the new one
  with :func:`apply_merge_patch`;
* the ``cps`` format's ``sourceData`` / ``targetData`` carry "only the changed leaves", as
  CPS's own delta report does (:func:`changed_leaves`): the old and the new value of every
  leaf that differs, nested as in the objects.

Both walk objects (JSON objects) member by member and treat everything else — strings,
numbers, booleans, null and arrays — as a leaf: RFC 7386 has no way to patch an array element,
so an array that changed is sent whole.

RFC 7386's one limitation: ``null`` in a patch means "remove this member", so a patch cannot
*set* a member to ``null``. ``apply_merge_patch(old, merge_patch_diff(old, new)) == new``
therefore holds for every ``new`` whose objects have no ``null`` member values (nulls inside
arrays are fine, arrays being leaves). Kubernetes objects as the API server returns them
omit null members, so this does not bite in practice; when it does, the patch removes the
member, which a JSON reader sees as the same absent-or-null value.

Pure functions, no I/O; inputs are never mutated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

JSONValue = Any
"""A value as ``json.loads`` returns it (dict, list, str, int, float, bool or None)."""


_ABSENT: Any = object()
"""Stands for a member one side does not have (``None`` is JSON ``null``, a value)."""


def _differing_members(
    old: dict[str, JSONValue], new: dict[str, JSONValue]
) -> Iterator[tuple[str, JSONValue, JSONValue]]:
    """``(name, old value, new value)`` of every member that differs, ``_ABSENT`` for a side
    without it: removed members first in ``old``'s order, then added or changed ones in ``new``'s.
    """
    for name, old_value in old.items():
        if name not in new:
            yield name, old_value, _ABSENT
    for name, new_value in new.items():
        old_value = old.get(name, _ABSENT)
        if old_value is _ABSENT or not json_equal(old_value, new_value):
            yield name, old_value, new_value


def merge_patch_diff(old: JSONValue, new: JSONValue) -> JSONValue:
    """The RFC 7386 merge patch that turns ``old`` into ``new``.

    Members removed in ``new`` appear as ``null``; members added or changed appear with their
    new value (recursively for two objects); unchanged members are absent, so two equal
    objects give ``{}``. When either side is not an object the patch is ``new`` itself.
    """
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    patch: dict[str, JSONValue] = {}
    for name, old_value, new_value in _differing_members(old, new):
        if new_value is _ABSENT:
            patch[name] = None
        elif isinstance(old_value, dict) and isinstance(new_value, dict):
            patch[name] = merge_patch_diff(old_value, new_value)
        else:
            patch[name] = copy.deepcopy(new_value)
    return patch


def apply_merge_patch(target: JSONValue, patch: JSONValue) -> JSONValue:
    """RFC 7386 §2 ``MergePatch(Target, Patch)``, returning a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, JSONValue] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply_merge_patch(result.get(name), value)
    return result


def changed_leaves(old: JSONValue, new: JSONValue) -> tuple[JSONValue, JSONValue]:
    """``(source, target)``: the old and new values of every leaf that differs.

    Nested objects are walked; a member present on one side only appears on that side only
    (removed → in ``source``, added → in ``target``), and an object member appears on a side
    only if something under it does, so ``target`` never holds a path with no leaf. When either
    side is not an object the whole values are the leaves. Equal objects give ``({}, {})``.
    """
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(old), copy.deepcopy(new)
    source: dict[str, JSONValue] = {}
    target: dict[str, JSONValue] = {}
    for name, old_value, new_value in _differing_members(old, new):
        if isinstance(old_value, dict) and isinstance(new_value, dict):
            nested_source, nested_target = changed_leaves(old_value, new_value)
            if nested_source:
                source[name] = nested_source
            if nested_target:
                target[name] = nested_target
            continue
        if old_value is not _ABSENT:
            source[name] = copy.deepcopy(old_value)
        if new_value is not _ABSENT:
            target[name] = copy.deepcopy(new_value)
    return source, target


def json_equal(left: JSONValue, right: JSONValue) -> bool:
    """JSON equality: ``1 == 1.0`` as JSON says, but ``True`` is not ``1``."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            json_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    return bool(left == right)
