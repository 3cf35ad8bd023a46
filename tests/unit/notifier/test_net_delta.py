"""Net-delta coalescing (CONTRACT §6): a table of cases and the property that matters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.net_delta import NetDelta, ResourceChanges, resource_key


def pod(name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {"status": {"phase": phase}},
    }


def created(*entries: dict[str, Any]) -> ResourceChanges:
    return ResourceChanges(created=entries)


def deleted(*entries: dict[str, Any]) -> ResourceChanges:
    return ResourceChanges(deleted=entries)


def modified(*entries: dict[str, Any]) -> ResourceChanges:
    return ResourceChanges(modified=entries)


CASES = [
    ("single create", [created(pod("a"))], created(pod("a"))),
    ("create then delete cancels", [created(pod("a")), deleted(pod("a"))], ResourceChanges()),
    (
        "modifications collapse to the latest",
        [modified(pod("a", "P1")), modified(pod("a", "P2")), modified(pod("a", "P3"))],
        modified(pod("a", "P3")),
    ),
    (
        "create then modify is a create of the latest",
        [created(pod("a", "P1")), modified(pod("a", "P2"))],
        created(pod("a", "P2")),
    ),
    (
        "delete then re-create with a new status is a modification",
        [deleted(pod("a", "P1")), created(pod("a", "P2"))],
        modified(pod("a", "P2")),
    ),
    (
        "delete then re-create with the same status is nothing",
        [deleted(pod("a", "P1")), created(pod("a", "P1"))],
        ResourceChanges(),
    ),
    (
        "modify then delete is a delete carrying the last object",
        [modified(pod("a", "P2")), deleted(pod("a", "P2"))],
        deleted(pod("a", "P2")),
    ),
    (
        "create, delete, create is a create",
        [created(pod("a", "P1")), deleted(pod("a", "P1")), created(pod("a", "P3"))],
        created(pod("a", "P3")),
    ),
    (
        "independent resources are kept apart, in first-touch order",
        [created(pod("b")), modified(pod("a")), deleted(pod("c"))],
        ResourceChanges(created=(pod("b"),), deleted=(pod("c"),), modified=(pod("a"),)),
    ),
]


@pytest.mark.parametrize(
    ("sequence", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_net_change(sequence: list[ResourceChanges], expected: ResourceChanges) -> None:
    delta = NetDelta()
    for changes in sequence:
        delta.add(changes)
    assert delta.net() == expected


def test_add_counts_entries_merged_into_earlier_ones() -> None:
    delta = NetDelta()
    assert delta.add(created(pod("a"), pod("b"))) == 0
    assert delta.add(modified(pod("a", "X"))) == 1
    assert delta.add(deleted(pod("a", "X"), pod("b"))) == 2


def test_persisted_form_round_trips() -> None:
    delta = NetDelta()
    delta.add(deleted(pod("a", "P1")))
    delta.add(created(pod("b")))
    delta.add(modified(pod("c")))
    restored = NetDelta.from_json(delta.to_json(), "old")
    restored.add(created(pod("a", "P1")))
    delta.add(created(pod("a", "P1")))
    assert restored.net() == delta.net()


def test_resource_key_names_cluster_group_version_kind_namespace_name() -> None:
    entry = {
        "name": "web",
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "apps", "Version": "v1", "Kind": "Deployment"},
    }
    assert resource_key(entry) == "east/apps/v1/Deployment/ns/web"


def test_the_same_name_in_two_clusters_is_two_resources() -> None:
    west = {**pod("a"), "cluster": "west"}
    delta = NetDelta()
    assert delta.add(created(pod("a"), west)) == 0
    assert delta.add(deleted(west)) == 1
    assert delta.net() == ResourceChanges(created=(pod("a"),))


def test_entries_from_before_clusters_belong_to_the_cluster_they_came_from() -> None:
    """Deltas still on the topic and persisted state of the previous release lack ``cluster``."""
    legacy = {k: v for k, v in pod("a", "P1").items() if k != "cluster"}
    changes = ResourceChanges.from_json({"created": [legacy]}, "east")
    assert changes.created == (pod("a", "P1"),)
    pending = NetDelta()
    pending.add(ResourceChanges(created=(legacy,)))
    restored = NetDelta.from_json(pending.to_json(), "east")
    assert restored.add(modified(pod("a", "P2"))) == 1, "old and new entries meet under one key"
    assert restored.net() == ResourceChanges(created=(pod("a", "P2"),))


# --- the property: told state + delivered net deltas == true state -------------------------

NAMES = ["a", "b", "c", "d"]
STATUSES = ["S0", "S1", "S2"]


def apply(view: dict[str, dict[str, Any]], changes: ResourceChanges) -> None:
    for entry in changes.created:
        key = resource_key(entry)
        assert key not in view, "net delta creates what the subscriber already has"
        view[key] = entry
    for entry in changes.modified:
        key = resource_key(entry)
        assert key in view, "net delta modifies what the subscriber never had"
        view[key] = entry
    for entry in changes.deleted:
        key = resource_key(entry)
        assert key in view, "net delta deletes what the subscriber never had"
        del view[key]


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """An initial state and a consistent stream of deltas, with delivery points."""
    initial = {
        resource_key(pod(n, s)): pod(n, s)
        for n, s in draw(st.dictionaries(st.sampled_from(NAMES), st.sampled_from(STATUSES))).items()
    }
    truth = dict(initial)
    steps: list[Any] = []
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.booleans()) and draw(st.booleans()):
            steps.append("deliver")
            continue
        changes: dict[str, list[dict[str, Any]]] = {"created": [], "deleted": [], "modified": []}
        for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=3)):
            key = resource_key(pod(name))
            status = draw(st.sampled_from(STATUSES))
            if key in truth:
                if draw(st.booleans()):
                    changes["deleted"].append(truth.pop(key))
                else:
                    truth[key] = pod(name, status)
                    changes["modified"].append(truth[key])
            else:
                truth[key] = pod(name, status)
                changes["created"].append(truth[key])
        steps.append(ResourceChanges.from_json(changes, "east"))
    return initial, steps


@settings(max_examples=400, deadline=None)
@given(histories())
def test_delivered_net_deltas_rebuild_the_true_state(
    history: tuple[dict[str, dict[str, Any]], list[Any]],
) -> None:
    initial, steps = history
    truth = dict(initial)
    told = dict(initial)
    pending = NetDelta()
    for step in steps:
        if step == "deliver":
            apply(told, pending.net())
            pending = NetDelta()
            continue
        for entry in step.created + step.modified:
            truth[resource_key(entry)] = entry
        for entry in step.deleted:
            truth.pop(resource_key(entry))
        pending.add(step)
    apply(told, pending.net())
    assert told == truth
