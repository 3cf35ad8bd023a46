"""The benchmarks' realistic Pod (``bench/pod_shape.py``): distinct per index, 3-6 KB of JSON.

Pure: it reads ``bench/data/pod.json`` only, no API server.
"""

from __future__ import annotations

import uuid

import orjson
import pytest

from bench.pod_shape import (
    DATA_FILE,
    POD_JSON_BYTES,
    compact_size,
    realistic_pod,
    realistic_pod_json,
)

INDICES = [0, 1, 2, 26, 27, 109, 110, 4095, 65_535, 65_536, 999_999, 1_000_000]


def test_stored_pod_is_a_served_pod_without_managed_fields() -> None:
    pod = orjson.loads(DATA_FILE.read_bytes())
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert "managedFields" not in pod["metadata"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert pod["status"]["phase"] == "Running"
    assert len(pod["spec"]["containers"]) == 2
    assert len(pod["spec"]["initContainers"]) == 1


@pytest.mark.parametrize("index", INDICES)
def test_size_band(index: int) -> None:
    assert 3000 <= POD_JSON_BYTES <= 6000
    assert 3000 <= compact_size(realistic_pod(index)) <= 6000


def test_distinct_per_index() -> None:
    distinct = {i: realistic_pod(i) for i in sorted({*range(300), *INDICES})}

    def values(field: str) -> set[str]:
        return {pod["metadata"][field] for pod in distinct.values()}

    for field in ("name", "uid", "resourceVersion", "creationTimestamp"):
        assert len(values(field)) == len(distinct), field
    assert len({pod["status"]["podIP"] for pod in distinct.values()}) == len(distinct)
    container_ids = [
        status["containerID"]
        for pod in distinct.values()
        for status in pod["status"]["containerStatuses"] + pod["status"]["initContainerStatuses"]
    ]
    assert len(set(container_ids)) == len(container_ids)


def test_same_index_same_pod_and_json_matches() -> None:
    first = realistic_pod(4242, "team-a")
    assert realistic_pod(4242, "team-a") == first
    assert first is not realistic_pod(4242, "team-a")
    assert realistic_pod_json(4242, "team-a") == orjson.dumps(first)


def test_per_pod_fields_agree() -> None:
    pod = realistic_pod(123_456, "team-a", instance="inst-7")
    metadata, status = pod["metadata"], pod["status"]
    assert metadata["namespace"] == "team-a"
    assert metadata["labels"]["k8splugin.io/rb-instance-id"] == "inst-7"
    assert metadata["name"].startswith(metadata["generateName"])
    assert uuid.UUID(metadata["uid"]).version == 4
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIPs"] == [{"ip": status["hostIP"]}]
    assert pod["spec"]["nodeName"].startswith("ip-" + status["hostIP"].replace(".", "-") + ".")
    init = status["initContainerStatuses"][0]
    assert init["containerID"] == init["state"]["terminated"]["containerID"]
    scheduled = next(c for c in status["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["lastTransitionTime"] == metadata["creationTimestamp"]


def test_negative_index_is_refused() -> None:
    with pytest.raises(ValueError, match="index"):
        realistic_pod(-1)
