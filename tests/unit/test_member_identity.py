"""Claiming member ids on one host, and telling a peer elsewhere from our own predecessor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deltawatch.member_identity import (
    GroupMember,
    IdentityInUse,
    claim_identity,
    host_of,
    member_client_id,
    peers_elsewhere,
)


def test_replicas_on_one_host_take_successive_slots_and_a_restart_takes_its_own_back(
    tmp_path: Path,
) -> None:
    first = claim_identity("differ-east-vm", None, tmp_path)
    second = claim_identity("differ-east-vm", None, tmp_path)
    third = claim_identity("differ-east-vm", None, tmp_path)
    assert [first.id, second.id, third.id] == [
        "differ-east-vm",
        "differ-east-vm-1",
        "differ-east-vm-2",
    ]
    second.release()  # the second replica dies
    assert claim_identity("differ-east-vm", None, tmp_path).id == "differ-east-vm-1"
    first.release()
    third.release()


def test_an_explicit_id_held_on_this_host_is_refused_naming_the_holder(tmp_path: Path) -> None:
    held = claim_identity("ignored", "tx-1", tmp_path)
    with pytest.raises(
        IdentityInUse, match=rf"DELTAWATCH_TRANSACTIONAL_ID=tx-1 .*pid {os.getpid()}"
    ):
        claim_identity("ignored", "tx-1", tmp_path)
    held.release()
    assert claim_identity("ignored", "tx-1", tmp_path).id == "tx-1"


def test_ids_with_odd_characters_get_distinct_lock_files(tmp_path: Path) -> None:
    a = claim_identity("x", "group/a b", tmp_path)
    b = claim_identity("x", "group/a:b", tmp_path)
    assert (a.id, b.id) == ("group/a b", "group/a:b")
    assert len(list(tmp_path.iterdir())) == 2  # though both read group_a_b once sanitised
    a.release()
    b.release()


def test_without_a_usable_lock_directory_the_id_is_taken_unlocked(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert claim_identity("base", None, blocker / "ids").id == "base"


def test_peers_elsewhere_are_members_holding_our_id_started_on_another_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOSTNAME", "pod-0")
    assert member_client_id("deltawatch-differ") == "deltawatch-differ@pod-0"
    assert host_of("deltawatch-differ@pod-0") == "pod-0"
    assert host_of("deltawatch-differ") is None
    members = [
        GroupMember("m1", "tx", "deltawatch-differ@pod-0"),  # our dead predecessor
        GroupMember("m2", "tx", "deltawatch-differ@node-7"),  # a peer elsewhere
        GroupMember("m3", "other", "deltawatch-differ@node-8"),  # another id
        GroupMember("m4", "tx", "deltawatch-differ"),  # an older release: fenced as before
    ]
    assert [m.member_id for m in peers_elsewhere(members, "tx", "pod-0")] == ["m2"]
