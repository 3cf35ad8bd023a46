"""Baselines of CPS subscriptions (stamps kept with the state) and the reserved instance-id."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from services.notifier.commands import Rejection, parse_command
from services.notifier.cps.directory import CpsDirectory
from services.notifier.cps.subscriptions import (
    SUBSCRIBE,
    UNSUBSCRIBE,
    CpsAction,
    DataspaceSubscription,
    apply_command,
    decode_state,
    encode_state,
    state_key,
    subscribed_since,
)

Step = tuple[CpsAction, Sequence[str] | None, int]


def _run(steps: Sequence[Step]) -> DataspaceSubscription | None:
    state: DataspaceSubscription | None = None
    for action, anchors, at_ms in steps:
        state = apply_command(state, "ds1", action, anchors, at_ms=at_ms)
    return state


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([(SUBSCRIBE, ["a1"], 10)], {"a1": 10, "a2": None}, id="listed"),
        pytest.param(
            [(SUBSCRIBE, ["a1"], 10), (SUBSCRIBE, ["a1", "a2"], 20)],
            {"a1": 10, "a2": 20},
            id="subscribing again keeps the baseline",
        ),
        pytest.param(
            [(SUBSCRIBE, [], 10)], {"a1": 10, "later": 10}, id="all: one baseline for everyone"
        ),
        pytest.param(
            [(SUBSCRIBE, ["a1"], 10), (SUBSCRIBE, [], 20)],
            {"a1": 10, "a2": 20},
            id="widening to all keeps the listed baselines",
        ),
        pytest.param(
            [(SUBSCRIBE, [], 10), (UNSUBSCRIBE, ["a1"], 20), (SUBSCRIBE, ["a1"], 30)],
            {"a1": 30, "a2": 10},
            id="re-included anchor starts at its re-subscription",
        ),
        pytest.param(
            [(SUBSCRIBE, [], 10), (UNSUBSCRIBE, ["a1"], 20), (SUBSCRIBE, [], 30)],
            {"a1": 30, "a2": 10},
            id="subscribe all again re-includes at that time",
        ),
        pytest.param(
            [(SUBSCRIBE, ["a1"], 10), (UNSUBSCRIBE, ["a1"], 20), (SUBSCRIBE, ["a1"], 30)],
            {"a1": 30},
            id="unsubscribed then subscribed again",
        ),
        pytest.param(
            [(SUBSCRIBE, [], 10), (UNSUBSCRIBE, [], 20), (SUBSCRIBE, ["a2"], 30)],
            {"a1": None, "a2": 30},
            id="after unsubscribe all",
        ),
    ],
)
def test_baselines(steps: Sequence[Step], expected: dict[str, int | None]) -> None:
    state = _run(steps)
    assert state is not None
    restored = decode_state(state_key("ds1"), encode_state(state))
    for anchor, since in expected.items():
        assert subscribed_since(state, anchor) == since, anchor
        assert subscribed_since(restored, anchor) == since, anchor


def test_stamped_state_layout() -> None:
    state = _run([(SUBSCRIBE, ["a1"], 10), (SUBSCRIBE, [], 20), (UNSUBSCRIBE, ["b"], 30)])
    assert state is not None
    assert json.loads(encode_state(state) or b"null") == {
        "kind": "cps-delta-notification",
        "dataspace": "ds1",
        "all-anchors": True,
        "anchors": [],
        "excluded-anchors": ["b"],
        "all-since-ms": 20,
        "anchors-since-ms": {"a1": 10},
    }


def test_unstamped_states_have_baseline_zero() -> None:
    state = decode_state(
        "cps/ds1", b'{"kind":"cps-delta-notification","dataspace":"ds1","all-anchors":true}'
    )
    assert subscribed_since(state, "x") == 0


@pytest.mark.parametrize("action", ["create", "update", "delete"])
def test_instance_id_cps_is_reserved(action: str) -> None:
    command = {"command-id": "c-1", "action": action, "instance-id": "cps"}
    if action == "delete":
        command["subscription-name"] = "s"
    else:
        command["subscription"] = {"name": "s", "callback-url": "http://127.0.0.1:1/"}  # type: ignore[assignment]
    parsed = parse_command(json.dumps(command).encode(), "t/0/0")
    assert isinstance(parsed, Rejection)
    assert parsed.code == "reserved-instance-id"
    assert "reserved" in parsed.message
    assert parsed.command_id == "c-1"
    command["instance-id"] = "cps-1"
    assert not isinstance(parse_command(json.dumps(command).encode(), "t/0/0"), Rejection)


def test_directory_keeps_cps_states_by_partition() -> None:
    directory = CpsDirectory()
    ds1 = encode_state(apply_command(None, "ds1", SUBSCRIBE, ["a"], at_ms=1))
    ds2 = encode_state(apply_command(None, "ds2", SUBSCRIBE, [], at_ms=2))
    directory.apply("cps/ds1", 0, ds1)
    directory.apply("cps/ds2", 1, ds2)
    directory.apply("inst/sub", 1, b'{"name": "sub"}')
    directory.apply("cps/ds3", 2, b"not json")
    assert sorted(directory.outside(set())) == ["ds1", "ds2"]
    assert sorted(directory.outside({0})) == ["ds2"]
    directory.apply("cps/ds2", 1, None)
    assert sorted(directory.outside(set())) == ["ds1"]
    assert len(directory) == 1
