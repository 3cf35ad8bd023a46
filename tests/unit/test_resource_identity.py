"""The shared contract names: their spellings on the wire, and managed-field stripping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deltawatch.avro_serde import load_schema
from deltawatch.cloud_events import DELTA_TYPE, HEARTBEAT_TYPE, SYNCED_TYPE
from deltawatch.resource_identity import (
    EventType,
    GroupVersionKind,
    ResourceKey,
    upgrade_path,
    without_managed_fields,
)


@pytest.mark.parametrize(
    ("text", "gvk", "spelt"),
    [
        ("v1/Pod", GroupVersionKind("", "v1", "Pod"), "v1/Pod"),
        (
            " apps/v1/Deployment ",
            GroupVersionKind("apps", "v1", "Deployment"),
            "apps/v1/Deployment",
        ),
    ],
)
def test_gvk_parses_and_spells_back(text: str, gvk: GroupVersionKind, spelt: str) -> None:
    assert GroupVersionKind.parse(text) == gvk
    assert str(gvk) == spelt
    assert hash(GroupVersionKind.parse(text)) == hash(gvk)


@pytest.mark.parametrize("text", ["Pod", "v1/", "/v1/Pod", "a/b/c/d", ""])
def test_gvk_refuses_other_shapes(text: str) -> None:
    with pytest.raises(ValueError, match="group/version/Kind"):
        GroupVersionKind.parse(text)


def test_resource_key_is_the_contract_tuple_in_its_order() -> None:
    key = ResourceKey.of("east", "apps", "v1", "StatefulSet", "prod", "db")
    # The differ's changelog keys spell the fields in this order: it is part of that format.
    assert tuple(key) == ("east", "apps", "v1", "StatefulSet", "prod", "db")
    assert key == ResourceKey(
        cluster="east", group="apps", version="v1", kind="StatefulSet", namespace="prod", name="db"
    )
    assert key.api_version == "apps/v1"
    assert ResourceKey("east", "", "v1", "Pod", "", "x").api_version == "v1"
    assert key.gvk == GroupVersionKind("apps", "v1", "StatefulSet")
    assert key.path == "east/apps/v1/StatefulSet/prod/db"  # persisted by the notifier
    assert ResourceKey("east", "", "v1", "Namespace", "", "x").path == "east//v1/Namespace//x"


def test_paths_persisted_before_clusters_belong_to_the_legacy_cluster() -> None:
    assert upgrade_path("apps/v1/StatefulSet/prod/db", "old") == "old/apps/v1/StatefulSet/prod/db"
    assert upgrade_path("/v1/Namespace//x", "old") == "old//v1/Namespace//x"
    current = ResourceKey("east", "", "v1", "Namespace", "", "x").path
    assert upgrade_path(current, "old") == current


def test_resource_key_interns_the_cluster_and_kind_strings() -> None:
    group, kind, cluster = "".join(["ap", "ps"]), "".join(["Dep", "loyment"]), "".join(["ea", "st"])
    one = ResourceKey.of(cluster, group, "v1", kind, "ns", "a")
    two = ResourceKey.of("east", "apps", "v1", "Deployment", "ns", "b")
    assert one.cluster is two.cluster
    assert one.group is two.group
    assert one.kind is two.kind


def test_event_types_are_the_avro_symbols() -> None:
    schema = load_schema("resource-event.avsc")
    (field,) = [f for f in schema["fields"] if f["name"] == "type"]
    assert [t.value for t in EventType] == field["type"]["symbols"]
    assert json.dumps({"type": EventType.LIST_END}) == '{"type": "LIST_END"}'
    assert f"{EventType.ADDED}" == "ADDED"


def test_delta_cloud_event_types_are_the_contract_ones() -> None:
    assert DELTA_TYPE == "org.deltawatch.instance.status.delta"
    assert SYNCED_TYPE == "org.deltawatch.instance.status.synced"
    assert HEARTBEAT_TYPE == "org.deltawatch.instance.status.heartbeat"


def test_without_managed_fields_copies_only_when_it_must() -> None:
    obj: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}], "uid": "u"},
        "status": {},
    }
    stripped = without_managed_fields(obj)
    assert stripped == {"kind": "Pod", "metadata": {"name": "a", "uid": "u"}, "status": {}}
    assert list(stripped) == list(obj)  # same key order, so the same JSON text
    assert "managedFields" in obj["metadata"]  # the caller's object is left alone
    clean = {"metadata": {"name": "a"}}
    assert without_managed_fields(clean) is clean
    assert without_managed_fields({"metadata": None}) == {"metadata": None}
