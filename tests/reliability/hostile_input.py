"""Bad input for the pipeline's two public entry points: the commands topic and the
resource-events topic.

Why both hypothesis and hand-picked cases: the hand-picked ones name the failures a user or a
broken producer really sends (malformed JSON, wrong types, huge metadata, unicode, URLs into
forbidden networks, garbage bytes, a record in another Avro schema); hypothesis varies each
way of breaking a valid command so that the notifier's parser meets shapes nobody listed.
Every generated command is *certainly* invalid (one field broken, the rest valid), so each
must be answered "rejected".
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

DENIED_NETWORK = "10.0.0.0/8"


def valid_create(instance: str, name: str) -> dict[str, Any]:
    return {
        "command-id": f"fuzz-{instance}-{name}",
        "action": "create",
        "instance-id": instance,
        "subscription": {
            "name": name,
            "callback-url": "http://127.0.0.1:9/notify",
            "min-notify-interval": 1,
            "metadata": {},
        },
    }


@dataclass(frozen=True)
class BadCommand:
    why: str
    raw: bytes

    @property
    def command_id(self) -> str | None:
        try:
            loaded = json.loads(self.raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(loaded, dict) and isinstance(loaded.get("command-id"), str):
            return str(loaded["command-id"])
        return None


def _bad(why: str, command: Any) -> BadCommand:
    return BadCommand(why, json.dumps(command, ensure_ascii=False).encode())


def hand_picked_commands() -> list[BadCommand]:
    base = valid_create("hostile", "sub")

    def with_sub(**changes: Any) -> dict[str, Any]:
        return {**base, "subscription": {**base["subscription"], **changes}}

    cases = [
        BadCommand("malformed JSON", b'{"command-id": "x", "action": '),
        BadCommand("not UTF-8", b"\xff\xfe\x00garbage"),
        BadCommand("empty value", b""),
        _bad("JSON array", [1, 2, 3]),
        _bad("JSON string", "create"),
        _bad("unknown action", {**base, "action": "explode"}),
        _bad("interval as string", with_sub(**{"min-notify-interval": "10"})),
        _bad("negative interval", with_sub(**{"min-notify-interval": -1})),
        _bad("interval as float", with_sub(**{"min-notify-interval": 1.5})),
        _bad("metadata not an object", with_sub(metadata=["a"])),
        _bad("huge metadata", with_sub(metadata={"blob": "x" * (70 * 1024)})),
        _bad("URL not http", with_sub(**{"callback-url": "ftp://127.0.0.1/x"})),
        _bad("URL garbage", with_sub(**{"callback-url": "not a url"})),
        _bad("URL in denied network", with_sub(**{"callback-url": "http://10.1.2.3:8080/n"})),
        _bad("instance-id with slash", {**base, "instance-id": "a/b"}),
        _bad("instance-id with control char", {**base, "instance-id": "a\x07b"}),
        _bad("instance-id too long", {**base, "instance-id": "i" * 254}),
        _bad("name empty", with_sub(name="")),
        _bad("missing subscription", {k: v for k, v in base.items() if k != "subscription"}),
        _bad("unknown field", {**base, "surprise": True}),
        _bad("update of a missing subscription", {**base, "action": "update"}),
        _bad(
            "delete of a missing subscription",
            {**base, "action": "delete", "subscription-name": "nope"},
        ),
        _bad("command-id not a string", {**base, "command-id": 42}),
    ]
    return [
        BadCommand(c.why, c.raw) if c.command_id is None else _rename(c, i)
        for i, c in enumerate(cases)
    ]


def _rename(command: BadCommand, index: int) -> BadCommand:
    """Unique command-ids, so each result is attributable."""
    loaded = json.loads(command.raw)
    loaded["command-id"] = f"hand-{index}"
    return BadCommand(command.why, json.dumps(loaded, ensure_ascii=False).encode())


_WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_BAD_NAMES = st.one_of(
    st.just(""),
    st.text(min_size=254, max_size=300),
    st.text(max_size=20).map(lambda t: f"{t}/{t}"),
    st.text(max_size=10).map(lambda t: f"{t}\x00{t}"),
    _WRONG_VALUES,
)


@st.composite
def broken_commands(draw: st.DrawFn) -> dict[str, Any]:
    """A valid create with exactly one thing broken."""
    command = valid_create("fuzz", "sub")
    subscription = dict(command["subscription"])
    way = draw(
        st.sampled_from(
            ["action", "instance-id", "name", "url", "interval", "metadata", "extra", "missing"]
        )
    )
    if way == "action":
        command["action"] = draw(
            st.one_of(st.text().filter(lambda t: t not in _ACTIONS), _WRONG_VALUES)
        )
    elif way == "instance-id":
        command["instance-id"] = draw(_BAD_NAMES)
    elif way == "name":
        subscription["name"] = draw(_BAD_NAMES)
    elif way == "url":
        subscription["callback-url"] = draw(
            st.one_of(
                st.text(max_size=30).filter(lambda t: not t.startswith("http")),
                st.integers().map(lambda n: f"http://10.{n % 256}.0.1/x"),
                _WRONG_VALUES,
            )
        )
    elif way == "interval":
        subscription["min-notify-interval"] = draw(
            st.one_of(st.integers(max_value=-1), st.text(max_size=5), _WRONG_VALUES)
        )
    elif way == "metadata":
        subscription["metadata"] = draw(
            st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2), st.integers())
        )
    elif way == "extra":
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in subscription))
        subscription[key] = draw(st.integers())
    else:
        # interval and metadata may be left out (Go zero value 0, default {}): not these
        del subscription[draw(st.sampled_from(["name", "callback-url"]))]
    command["subscription"] = subscription
    return command


_ACTIONS = {
    "create",
    "update",
    "delete",
    "subscribe-delta-notification",
    "unsubscribe-delta-notification",
}


def generated_commands(run_seed: int, count: int) -> list[BadCommand]:
    """``count`` broken commands drawn by hypothesis, reproducibly from ``run_seed``."""
    drawn: list[dict[str, Any]] = []

    @seed(run_seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(broken_commands())
    def collect(command: dict[str, Any]) -> None:
        drawn.append(command)

    collect()
    unique = {json.dumps(c, sort_keys=True): c for c in drawn}
    bad = []
    for index, command in enumerate(unique.values()):
        command["command-id"] = f"gen-{index}"
        bad.append(_bad("generated", command))
    return bad


# -- resource events ----------------------------------------------------------------------

SINGLE_OBJECT_MARKER = b"\xc3\x01"


def garbage_resource_events() -> list[tuple[str, bytes | None, bytes]]:
    """(why, key, value) of records no differ can read."""
    return [
        ("random bytes", b"rel0", os.urandom(64)),
        ("empty value", b"rel1", b""),
        ("JSON, not Avro", b"rel2", b'{"type": "ADDED"}'),
        (
            "unknown schema fingerprint",
            b"rel0",
            SINGLE_OBJECT_MARKER + struct.pack("<Q", 42) + os.urandom(40),
        ),
        ("marker-shaped garbage, null key", None, SINGLE_OBJECT_MARKER + b"\x00" * 3),
    ]
