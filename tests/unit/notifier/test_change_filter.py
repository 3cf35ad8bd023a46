"""Per-subscription filters: change-types, kinds, namespaces, and the net change's types."""

from __future__ import annotations

from typing import Any

from services.notifier.change_filter import ChangeFilter
from services.notifier.filter_fields import SubscriptionFilters
from services.notifier.net_delta import NetDelta, ResourceChanges


def entry(
    name: str, namespace: str = "ns", kind: str = "Pod", group: str = "", phase: str = "Running"
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "cluster": "east",
        "GVK": {"Group": group, "Version": "v1", "Kind": kind},
        "status": {"metadata": {"name": name}, "status": {"phase": phase}},
    }


def change_filter(**fields: Any) -> ChangeFilter:
    built = ChangeFilter.of(SubscriptionFilters.model_validate(fields))
    assert built is not None
    return built


def test_no_filter_fields_is_no_filter() -> None:
    assert ChangeFilter.of(SubscriptionFilters()) is None
    assert ChangeFilter.of(SubscriptionFilters.model_validate({"include-patch": True})) is None


def test_change_types_keep_only_the_listed_lists() -> None:
    flt = change_filter(**{"change-types": ["created", "deleted"]})
    changes = ResourceChanges((entry("a"),), (entry("b"),), (entry("c"),))
    assert flt.select(changes) == ResourceChanges((entry("a"),), (entry("b"),), ())


def test_kinds_match_group_version_and_kind_exactly() -> None:
    flt = change_filter(kinds=[{"group": "apps", "version": "v1", "kind": "Deployment"}])
    deployment = entry("d", kind="Deployment", group="apps")
    other_group = entry("x", kind="Deployment", group="extensions")
    selected = flt.select(ResourceChanges(modified=(entry("p"), deployment, other_group)))
    assert selected.modified == (deployment,)


def test_namespaces_select_and_exclude_namespaces_drop() -> None:
    changes = ResourceChanges(
        created=(entry("a", "prod"), entry("b", "dev"), entry("node", ""), entry("c", "kube"))
    )
    only = change_filter(namespaces=["prod", "kube"], **{"exclude-namespaces": []})
    assert [e["name"] for e in only.select(changes).created] == ["a", "c"]
    but = change_filter(**{"exclude-namespaces": ["kube"]})
    assert [e["name"] for e in but.select(changes).created] == ["a", "b", "node"]


def test_a_recreation_coalesced_into_a_modification_is_not_told_without_modified() -> None:
    flt = change_filter(**{"change-types": ["created", "deleted"]})
    net = NetDelta()
    net.add(flt.select(ResourceChanges(deleted=(entry("a"),))))
    net.add(flt.select(ResourceChanges(created=(entry("a", phase="Pending"),))))
    assert net.net().modified  # the engine sees a modification ...
    assert not flt.wanted_net(net.net())  # ... which this subscriber does not want
