"""The watcher's pure parts, without Kafka or Kubernetes: tables of cases and properties."""

from __future__ import annotations

import itertools
import json
import random
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deltawatch.avro_serde import AvroSerde
from deltawatch.resource_identity import EventType, GroupVersionKind
from services.watcher.backoff import Backoff
from services.watcher.instances import InstanceIndex, Routed
from services.watcher.kinds import (
    InvalidSubscription,
    SubscriptionKinds,
    WatchTarget,
    desired_targets,
    extra_kinds_of,
)
from services.watcher.lines import split_lines
from services.watcher.outbox import Outbox, Outgoing
from services.watcher.records import Leader, ListRun, marker_record, object_record

LABEL = "k8splugin.io/rb-instance-id"
CM = GroupVersionKind.parse("v1/ConfigMap")
CRD_KIND = GroupVersionKind(group="example.org", version="v1", kind="Widget")

# -- lines ----------------------------------------------------------------------------------


@given(
    lines=st.lists(st.binary(min_size=1).filter(lambda b: b"\n" not in b and b.strip())),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000)),
)
def test_split_lines_yields_each_line_whatever_the_chunking(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert list(split_lines(chunks)) == lines


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b""], []),
        ([b"\n\n  \n"], []),
        ([b'{"a":1}'], [b'{"a":1}']),  # stream closed before the newline
        ([b'{"a"', b":1}\n{", b'"b":2}\n'], [b'{"a":1}', b'{"b":2}']),
    ],
)
def test_split_lines_cases(chunks: list[bytes], expected: list[bytes]) -> None:
    assert list(split_lines(chunks)) == expected


def test_split_lines_joins_a_multi_megabyte_line_from_small_chunks() -> None:
    line = b"x" * (3 * 1024 * 1024)
    chunks = [line[i : i + 1000] for i in range(0, len(line), 1000)] + [b"\nnext\n"]
    assert list(split_lines(chunks)) == [line, b"next"]


# -- backoff --------------------------------------------------------------------------------


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(base_s=0.1, cap_s=2.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    for n, delay in enumerate(delays):
        ceiling = min(2.0, 0.1 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 2.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next_delay() <= 0.1


# -- kinds ----------------------------------------------------------------------------------


def sub(*kinds: dict[str, str], **extra: object) -> bytes:
    return json.dumps(
        {"name": "s", "instance-id": "i", "extra-resource-types": list(kinds), **extra}
    ).encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (sub(), frozenset()),
        (json.dumps({"name": "s"}).encode(), frozenset()),
        (sub({"group": "", "version": "v1", "kind": "ConfigMap"}), frozenset({CM})),
        (sub({"version": "v1", "kind": "ConfigMap"}), frozenset({CM})),
        (
            sub({"group": "example.org", "version": "v1", "kind": "Widget"}),
            frozenset({CRD_KIND}),
        ),
    ],
)
def test_extra_kinds_of(value: bytes, expected: frozenset[GroupVersionKind]) -> None:
    assert extra_kinds_of(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"\xff\xfe",
        b"[1]",
        json.dumps({"extra-resource-types": "v1/Pod"}).encode(),
        sub({"group": "", "version": "v1"}),
        json.dumps({"extra-resource-types": ["v1/Pod"]}).encode(),
        json.dumps({"extra-resource-types": [{"version": 1, "kind": "Pod"}]}).encode(),
        sub({"group": "a/b", "version": "v1", "kind": "Pod"}),
    ],
)
def test_extra_kinds_of_rejects_unusable_values(value: bytes) -> None:
    with pytest.raises(InvalidSubscription):
        extra_kinds_of(value)


def test_subscription_kinds_follow_the_latest_value_per_key() -> None:
    kinds = SubscriptionKinds()
    widget = {"group": "example.org", "version": "v1", "kind": "Widget"}
    kinds.apply("i1/a", sub(widget))
    kinds.apply("i2/b", sub(widget))
    assert kinds.kinds() == {CRD_KIND}
    kinds.apply("i1/a", None)
    assert kinds.kinds() == {CRD_KIND}  # still wanted by i2/b
    kinds.apply("i2/b", sub())  # updated without extras
    assert kinds.kinds() == frozenset()
    kinds.apply("i3/c", sub(widget))
    with pytest.raises(InvalidSubscription):
        kinds.apply("i3/c", b"garbage")
    assert kinds.kinds() == frozenset()  # the garbage replaced the old value


def test_desired_targets_per_namespace_or_cluster_wide() -> None:
    pod = GroupVersionKind.parse("v1/Pod")
    assert desired_targets([pod, CM], [CM, CRD_KIND], []) == {
        WatchTarget.of(pod),
        WatchTarget.of(CM),
        WatchTarget.of(CRD_KIND),
    }
    assert desired_targets([pod], [], ["a", "b"]) == {
        WatchTarget.of(pod, "a"),
        WatchTarget.of(pod, "b"),
    }
    assert str(WatchTarget.of(CRD_KIND, "ns")) == "example.org/v1/Widget@ns"
    assert str(WatchTarget.of(CM)) == "v1/ConfigMap@*"


# -- instances ------------------------------------------------------------------------------


def cm(uid: str, instance: str | None) -> dict[str, object]:
    labels = {LABEL: instance} if instance else {}
    return {"metadata": {"uid": uid, "name": uid, "namespace": "ns", "labels": labels}}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("ADDED", "a")], [[Routed("ADDED", "a")]]),
        (
            [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")],
            [[Routed("ADDED", "a")], [Routed("MODIFIED", "a")], [Routed("DELETED", "a")]],
        ),
        (  # label value changed: the old instance loses it, the new one gains it
            [("ADDED", "a"), ("MODIFIED", "b")],
            [[Routed("ADDED", "a")], [Routed("DELETED", "a"), Routed("ADDED", "b")]],
        ),
        (  # label removed: the server sends DELETED with the unlabelled object
            [("ADDED", "a"), ("DELETED", None)],
            [[Routed("ADDED", "a")], [Routed("DELETED", "a")]],
        ),
        (  # a MODIFIED without the label (never seen before it) concerns nobody
            [("MODIFIED", None)],
            [[]],
        ),
        ([("DELETED", None)], [[]]),
    ],
)
def test_instance_index_routes_watch_events(
    steps: list[tuple[str, str | None]], expected: list[list[Routed]]
) -> None:
    index = InstanceIndex(LABEL)
    got = [index.watched(t, cm("u1", inst)) for t, inst in steps]  # type: ignore[arg-type]
    assert got == expected


def test_instance_index_is_rebuilt_by_a_list() -> None:
    index = InstanceIndex(LABEL)
    index.watched("ADDED", cm("u1", "a"))
    index.start_list()
    assert len(index) == 0
    assert index.listed(cm("u2", "b")) == "b"
    assert index.listed(cm("u3", None)) is None
    assert index.watched("DELETED", cm("u2", None)) == [Routed("DELETED", "b")]


# -- records --------------------------------------------------------------------------------


def test_object_and_marker_records_round_trip_through_the_avro_schema() -> None:
    serde = AvroSerde.from_file("resource-event.avsc", "t", None)
    target = WatchTarget.of(GroupVersionKind.parse("apps/v1/Deployment"), "ns")
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "42",
            "labels": {LABEL: "inst-1"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"replicas": 2},
    }
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    run = ListRun("L1", "expired", "40")
    record = serde.decode(
        serde.encode(
            object_record(
                EventType.LISTED,
                target,
                obj,
                "inst-1",
                cluster="c1",
                observed_at=at,
                list_run=run,
                leader=Leader("ns/lease", 3),
            )
        )
    )
    assert record == {
        "type": "LISTED",
        "cluster": "c1",
        "instance_id": "inst-1",
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
        "namespace": "ns",
        "name": "web",
        "uid": "u-1",
        "resource_version": "42",
        "observed_at": at,
        "list_id": "L1",
        "list_reason": "expired",
        "object": record["object"],
        "leader_epoch": 3,
        "leader_lease": "ns/lease",
    }
    shipped = json.loads(record["object"])
    assert "managedFields" not in shipped["metadata"]
    assert shipped["spec"] == {"replicas": 2}
    assert "managedFields" in obj["metadata"]  # the caller's object is left alone

    marker = serde.decode(
        serde.encode(marker_record(EventType.LIST_END, target, run, cluster="c1", observed_at=at))
    )
    assert marker["type"] == "LIST_END"
    assert (marker["leader_epoch"], marker["leader_lease"]) == (None, None)  # no election
    assert marker["instance_id"] is None
    assert marker["object"] is None
    assert marker["name"] is None
    assert (marker["namespace"], marker["resource_version"], marker["list_id"]) == (
        "ns",
        "40",
        "L1",
    )
    cluster_scoped = marker_record(
        EventType.LIST_BEGIN, target, run, cluster="c1", observed_at=at, namespaced=False
    )
    assert cluster_scoped["namespace"] is None


# -- outbox ---------------------------------------------------------------------------------


def item(size: int) -> Outgoing:
    return Outgoing(value=b"x" * size, key=None, kind="v1/ConfigMap", event_type="ADDED")


def test_outbox_blocks_producers_when_full_until_drained() -> None:
    outbox = Outbox(max_bytes=100)
    stop = threading.Event()
    assert outbox.put(item(60), stop)
    accepted = threading.Event()

    def second() -> None:
        if outbox.put(item(60), stop):
            accepted.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not accepted.wait(0.3)  # 120 bytes would exceed the bound: the writer waits
    assert outbox.depth == 1
    first = outbox.get(1.0)
    assert first is not None
    assert first.size == 60
    assert accepted.wait(5.0)
    thread.join()
    assert (outbox.depth, outbox.bytes) == (1, 60)


def test_outbox_takes_one_oversized_item_alone_and_releases_waiters_on_stop() -> None:
    outbox = Outbox(max_bytes=10, max_items=5)
    stop = threading.Event()
    assert outbox.put(item(1000), stop)  # larger than the bound, but the outbox was empty
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(outbox.put(item(1), stop)))
    thread.start()
    stop.set()
    thread.join(5.0)
    assert result == [False]
    assert outbox.get(0.01) is not None
    assert outbox.get(0.01) is None
