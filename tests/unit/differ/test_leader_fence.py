"""The differ's fence by watcher leader epoch, and its state in the changelog."""

from __future__ import annotations

from datetime import UTC, datetime

from deltawatch.resource_identity import EventType
from services.differ.changelog_codec import SnapshotBuilder, encode_epochs, encode_snapshot
from services.differ.leader_fence import BatchFence
from services.differ.resource_event import ResourceEvent
from services.differ.snapshot import PartitionSnapshot

EAST = ("east", "deltawatch/deltawatch-watcher-east")
WEST = ("west", "deltawatch/deltawatch-watcher-west")


def event(fenced: tuple[str, str], epoch: int | None, name: str = "a") -> ResourceEvent:
    return ResourceEvent(
        type=EventType.MODIFIED,
        cluster=fenced[0],
        instance_id="inst",
        group="",
        version="v1",
        kind="ConfigMap",
        namespace="ns",
        name=name,
        uid="u",
        observed_at=datetime(2026, 12, 7, tzinfo=UTC),
        list_id=None,
        object={},
        leader_epoch=epoch,
        leader_lease=fenced[1],
    )


def test_a_lower_epoch_after_a_higher_one_is_dropped_and_counted() -> None:
    fence = BatchFence({})
    events = [event(EAST, 3, "a"), event(EAST, 4, "b"), event(EAST, 3, "c")]
    assert [e.name for e in fence.admitted(events)] == ["a", "b"]
    assert fence.dropped == {(EAST, 3): 1}
    assert fence.writes == {EAST: 4}


def test_clusters_are_fenced_apart_and_null_epochs_always_pass() -> None:
    fence = BatchFence({EAST: 9})
    assert fence.admit(WEST, 1)  # another cluster's lease, another count
    assert fence.admit(EAST, None)  # no leader election
    assert fence.admit(EAST, 9)  # the same term goes on
    assert not fence.admit(EAST, 8)
    assert fence.writes == {WEST: 1}


def test_two_pairs_splitting_one_cluster_count_their_own_leases() -> None:
    """Watchers of one cluster split by namespace or kind, one pair (and Lease) each: a low
    count on one Lease says nothing about the other's terms."""
    shop = ("east", "deltawatch/shop-watcher-east")
    fence = BatchFence({EAST: 12})
    assert fence.admit(shop, 1)
    assert fence.admit(EAST, 12)
    assert not fence.admit(shop, 0)


def test_the_partition_state_changes_only_on_commit() -> None:
    committed = {EAST: 2}
    fence = BatchFence(committed)
    assert fence.admit(EAST, 5)
    assert committed == {EAST: 2}  # an aborted batch leaves nothing behind
    fence.commit_to(committed)
    assert committed == {EAST: 5}
    assert not BatchFence(committed).admit(EAST, 4)


def test_each_partition_keeps_its_own_highest_epoch() -> None:
    """A partition that has not yet seen the new term still admits the old one's records:
    on it, they are not later than anything of the new term."""
    partitions = {0: {EAST: 5}, 1: {EAST: 4}}
    assert not BatchFence(partitions[0]).admit(EAST, 4)
    assert BatchFence(partitions[1]).admit(EAST, 4)


def test_the_highest_epochs_survive_a_restore_from_the_changelog() -> None:
    builder = SnapshotBuilder("default")
    for key, value in encode_epochs({EAST: 3, WEST: 1}):
        builder.apply(key, value)
    for key, value in encode_epochs({EAST: 7}):
        builder.apply(key, value)
    assert builder.snapshot.leader_epochs == {EAST: 7, WEST: 1}
    assert not BatchFence(builder.snapshot.leader_epochs).admit(EAST, 6)
    snapshot = PartitionSnapshot(leader_epochs={EAST: 7})
    again = SnapshotBuilder("default")
    for key, value in encode_snapshot(snapshot):
        again.apply(key, value)
    assert again.snapshot.leader_epochs == {EAST: 7}


def test_the_epoch_record_key_and_value() -> None:
    assert encode_epochs({("east", "ns/l"): 3}) == [(b'["e","east","ns/l"]', b'{"epoch":3}')]
