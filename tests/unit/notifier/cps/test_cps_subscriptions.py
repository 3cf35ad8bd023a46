"""The per-dataspace subscribe/unsubscribe rule and its state on the subscriptions topic."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from services.notifier.cps.subscriptions import (
    SUBSCRIBE,
    UNSUBSCRIBE,
    CpsAction,
    CpsStateDecodeError,
    DataspaceSubscription,
    apply_command,
    dataspace_of_key,
    decode_state,
    encode_state,
    is_subscribed,
    state_key,
    subscribed_dataspaces,
)

Command = tuple[CpsAction, Sequence[str] | None]
PROBES = ("a1", "a2", "a3", "later")


def _run(commands: Sequence[Command]) -> DataspaceSubscription | None:
    state: DataspaceSubscription | None = None
    for action, anchors in commands:
        state = apply_command(state, "ds1", action, anchors)
    return state


@pytest.mark.parametrize(
    ("commands", "subscribed"),
    [
        pytest.param([], set(), id="nothing by default"),
        pytest.param([(SUBSCRIBE, ["a1"])], {"a1"}, id="subscribe one"),
        pytest.param([(SUBSCRIBE, ["a1"]), (SUBSCRIBE, ["a2"])], {"a1", "a2"}, id="adds up"),
        pytest.param([(SUBSCRIBE, [])], set(PROBES), id="subscribe all (empty list)"),
        pytest.param([(SUBSCRIBE, None)], set(PROBES), id="subscribe all (absent)"),
        pytest.param(
            [(SUBSCRIBE, []), (UNSUBSCRIBE, ["a2"])],
            {"a1", "a3", "later"},
            id="unsubscribe subset of all keeps the rest, future anchors too",
        ),
        pytest.param(
            [(SUBSCRIBE, []), (UNSUBSCRIBE, ["a2"]), (SUBSCRIBE, ["a2"])],
            set(PROBES),
            id="resubscribing an excluded anchor re-includes it",
        ),
        pytest.param(
            [(SUBSCRIBE, []), (UNSUBSCRIBE, ["a2"]), (SUBSCRIBE, [])],
            set(PROBES),
            id="subscribe all clears exclusions",
        ),
        pytest.param(
            [(SUBSCRIBE, ["a1"]), (SUBSCRIBE, [])], set(PROBES), id="subscribe all widens a list"
        ),
        pytest.param(
            [(SUBSCRIBE, []), (SUBSCRIBE, ["a1"])], set(PROBES), id="naming never narrows all"
        ),
        pytest.param(
            [(SUBSCRIBE, ["a1", "a2"]), (UNSUBSCRIBE, ["a2"])], {"a1"}, id="unsubscribe one"
        ),
        pytest.param(
            [(SUBSCRIBE, ["a1"]), (UNSUBSCRIBE, ["a3"])], {"a1"}, id="unsubscribe unknown: no-op"
        ),
        pytest.param([(SUBSCRIBE, ["a1"]), (UNSUBSCRIBE, [])], set(), id="unsubscribe all (list)"),
        pytest.param(
            [(SUBSCRIBE, []), (UNSUBSCRIBE, ["a1"]), (UNSUBSCRIBE, None)],
            set(),
            id="unsubscribe all (all + exclusions)",
        ),
        pytest.param(
            [(SUBSCRIBE, []), (UNSUBSCRIBE, []), (SUBSCRIBE, ["a3"])],
            {"a3"},
            id="resubscribe after unsubscribe all starts afresh",
        ),
        pytest.param([(UNSUBSCRIBE, ["a1"])], set(), id="unsubscribe with nothing subscribed"),
    ],
)
def test_subscription_rule(commands: Sequence[Command], subscribed: set[str]) -> None:
    state = _run(commands)
    assert {anchor for anchor in PROBES if is_subscribed(state, anchor)} == subscribed
    # The state survives the subscriptions topic unchanged; an empty one is a tombstone.
    if state is not None:
        assert state.is_empty == (not subscribed)
        if state.is_empty:
            assert encode_state(state) is None
        else:
            assert _restored(state) == state


def _restored(state: DataspaceSubscription) -> DataspaceSubscription | None:
    return decode_state(state_key(state.dataspace), encode_state(state))


def test_state_json_layout() -> None:
    state = _run([(SUBSCRIBE, []), (UNSUBSCRIBE, ["z", "b"])])
    assert state is not None
    value = encode_state(state)
    assert value is not None
    assert json.loads(value) == {
        "kind": "cps-delta-notification",
        "dataspace": "ds1",
        "all-anchors": True,
        "anchors": [],
        "excluded-anchors": ["b", "z"],
    }
    listed = _run([(SUBSCRIBE, ["y", "x"])])
    assert listed is not None
    assert json.loads(encode_state(listed) or b"null")["anchors"] == ["x", "y"]


def test_unsubscribed_everything_is_a_tombstone() -> None:
    state = _run([(SUBSCRIBE, ["a1"]), (UNSUBSCRIBE, ["a1"])])
    assert state is not None
    assert state.is_empty
    assert encode_state(state) is None
    assert decode_state("cps/ds1", None) is None


def test_keys() -> None:
    assert state_key("ds1") == "cps/ds1"
    assert dataspace_of_key("cps/ds1") == "ds1"
    assert dataspace_of_key("inst-1/sub-1") is None
    assert dataspace_of_key("cps/") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cps/ds1", b"not json"),
        ("cps/ds1", b"[]"),
        ("cps/ds1", b'{"kind": "cps-delta-notification", "dataspace": "ds1"}'),
        ("cps/ds1", b'{"kind": "subscription", "dataspace": "ds1", "all-anchors": true}'),
        ("cps/ds1", b'{"kind": "cps-delta-notification", "dataspace": "ds2", "all-anchors": true}'),
        (
            "cps/ds1",
            b'{"kind": "cps-delta-notification", "dataspace": "ds1", "all-anchors": true,'
            b' "excluded-anchors": "a1"}',
        ),
        ("inst/sub", b'{"kind": "cps-delta-notification", "dataspace": "x", "all-anchors": true}'),
    ],
)
def test_bad_state_values_are_refused_with_a_message(key: str, value: bytes) -> None:
    with pytest.raises(CpsStateDecodeError, match=r"\S"):
        decode_state(key, value)


def test_subscribed_dataspaces() -> None:
    states = {
        "ds1": DataspaceSubscription("ds1", anchors=frozenset({"a1"})),
        "ds2": DataspaceSubscription("ds2", all_anchors=True, excluded=frozenset({"a2"})),
        "ds3": DataspaceSubscription("ds3"),
    }
    assert subscribed_dataspaces(states, "a1") == ["ds1", "ds2"]
    assert subscribed_dataspaces(states, "a2") == []
    assert subscribed_dataspaces(states, "new") == ["ds2"]
