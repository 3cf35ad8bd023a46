"""Command parsing and handling (CONTRACT §4): every path and every rejection code."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from services.notifier.command_handling import (
    CommandContext,
    SubscriptionTable,
    handle_command,
    reject,
)
from services.notifier.commands import CpsCommand, Rejection, parse_command
from services.notifier.json_schemas import SCHEMA_DIR, generated

NOW = datetime(2026, 11, 24, 10, 15, 30, 123000, tzinfo=UTC)
SENT = datetime(2026, 11, 24, 10, 15, 29, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def create(**subscription: Any) -> dict[str, Any]:
    body = {
        "name": "sub-1",
        "callback-url": "http://10.0.0.5:8080/notify",
        "min-notify-interval": 10,
    }
    body.update(subscription)
    return {"command-id": "c-1", "action": "create", "instance-id": "inst-1", "subscription": body}


def parse(document: Any) -> Any:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_command(raw, "cmds/0/42")


REJECTIONS = [
    ("not json", b"{nope", "malformed-json", "cmds/0/42"),
    ("not an object", [1, 2], "malformed-json", "cmds/0/42"),
    ("no command-id", {"action": "create"}, "invalid-field", "cmds/0/42"),
    ("unknown action", {"command-id": "c-1", "action": "explode"}, "unknown-action", "c-1"),
    ("no action", {"command-id": "c-1"}, "invalid-field", "c-1"),
    (
        "missing subscription",
        {"command-id": "c-1", "action": "create", "instance-id": "i"},
        "invalid-field",
        "c-1",
    ),
    ("negative interval", create(**{"min-notify-interval": -1}), "invalid-interval", "c-1"),
    ("interval as string", create(**{"min-notify-interval": "10"}), "invalid-interval", "c-1"),
    ("interval as float", create(**{"min-notify-interval": 1.5}), "invalid-interval", "c-1"),
    ("ftp url", create(**{"callback-url": "ftp://x/y"}), "invalid-url", "c-1"),
    ("url without host", create(**{"callback-url": "http:///x"}), "invalid-url", "c-1"),
    ("missing url", {**create(), "subscription": {"name": "s"}}, "invalid-field", "c-1"),
    ("empty name", create(name=""), "invalid-name", "c-1"),
    ("slash in name", create(name="a/b"), "invalid-name", "c-1"),
    ("control char in name", create(name="a\nb"), "invalid-name", "c-1"),
    ("name too long", create(name="n" * 254), "name-too-long", "c-1"),
    ("instance-id too long", {**create(), "instance-id": "i" * 254}, "name-too-long", "c-1"),
    ("metadata too large", create(metadata={"blob": "x" * 70000}), "metadata-too-large", "c-1"),
    ("metadata not an object", create(metadata=[1]), "invalid-field", "c-1"),
    ("secret without prefix", create(secret="abc"), "invalid-secret", "c-1"),
    (
        "secret too short",
        create(secret="whsec_" + base64.b64encode(b"k" * 8).decode()),
        "invalid-secret",
        "c-1",
    ),
    ("unknown field", create(callback_url="x"), "invalid-field", "c-1"),
    ("unknown change type", create(**{"change-types": ["updated"]}), "unknown-change-type", "c-1"),
    ("change type not a string", create(**{"change-types": [1]}), "invalid-field", "c-1"),
    ("no change types", create(**{"change-types": []}), "empty-filter", "c-1"),
    ("kind without version", create(kinds=[{"kind": "Pod"}]), "invalid-kind", "c-1"),
    ("kind with a typo", create(kinds=[{"version": "v1", "knd": "Pod"}]), "invalid-kind", "c-1"),
    ("kind not an object", create(kinds=["Pod"]), "invalid-kind", "c-1"),
    ("no kinds", create(kinds=[]), "empty-filter", "c-1"),
    ("no namespaces", create(namespaces=[]), "empty-filter", "c-1"),
    ("namespace not a name", create(namespaces=["Prod ns"]), "invalid-namespace", "c-1"),
    (
        "namespace excluded and included",
        create(namespaces=["a", "b"], **{"exclude-namespaces": ["b"]}),
        "invalid-namespace",
        "c-1",
    ),
    ("include-patch not a bool", create(**{"include-patch": "yes"}), "invalid-field", "c-1"),
    (
        "delete without name",
        {"command-id": "c-1", "action": "delete", "instance-id": "i"},
        "invalid-field",
        "c-1",
    ),
    (
        "empty dataspace",
        {"command-id": "c-1", "action": "subscribe-delta-notification", "dataspace": ""},
        "invalid-name",
        "c-1",
    ),
    (
        "anchor with slash",
        {
            "command-id": "c-1",
            "action": "subscribe-delta-notification",
            "dataspace": "d",
            "anchors": ["a/b"],
        },
        "invalid-name",
        "c-1",
    ),
]


@pytest.mark.parametrize(
    ("document", "code", "command_id"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_parse_rejects_with_its_own_code(document: Any, code: str, command_id: str) -> None:
    parsed = parse(document)
    assert isinstance(parsed, Rejection), parsed
    assert (parsed.code, parsed.command_id) == (code, command_id)
    assert parsed.message
    result = reject(parsed, NOW).result
    assert result.status == "rejected"
    assert result.command_id == command_id
    assert result.error is not None
    assert result.error.code == code


def test_rejection_keeps_what_could_be_read() -> None:
    parsed = parse(create(**{"min-notify-interval": -5}))
    assert isinstance(parsed, Rejection)
    assert (parsed.action, parsed.instance_id, parsed.subscription_name) == (
        "create",
        "inst-1",
        "sub-1",
    )


def test_secret_never_shows_in_repr_or_dump() -> None:
    parsed = parse(create(secret=SECRET))
    assert not isinstance(parsed, Rejection)
    assert SECRET not in repr(parsed)
    assert SECRET not in str(parsed.model_dump())


def ctx(**kwargs: Any) -> CommandContext:
    return CommandContext(now=NOW, sent_at=SENT, **kwargs)


def apply(table: SubscriptionTable, document: dict[str, Any], **kwargs: Any) -> Any:
    parsed = parse(document)
    assert not isinstance(parsed, Rejection), parsed
    return handle_command(table, parsed, ctx(**kwargs))


def test_create_then_get_state_record() -> None:
    table = SubscriptionTable()
    applied = apply(table, create(metadata={"owner": "so"}))
    assert applied.result.status == "accepted"
    assert applied.result.processed_at == "2026-11-24T10:15:30.123Z"
    [(key, value)] = applied.writes
    assert key == "inst-1/sub-1"
    state = json.loads(value)
    assert state == {
        "name": "sub-1",
        "min-notify-interval": 10,
        "last-update-time": "2026-11-24T10:15:30.123Z",
        "callback-url": "http://10.0.0.5:8080/notify",
        "last-notify-time": "2026-11-24T10:15:30.123Z",
        "last-notify-status": 0,
        "metadata": {"owner": "so"},
        "instance-id": "inst-1",
        "created-at": "2026-11-24T10:15:29.000Z",
        "created-at-ms": int(SENT.timestamp() * 1000),
        "signed": False,
    }
    assert applied.change.kind == "created"
    assert table.of_instance("inst-1")[0].name == "sub-1"


def test_the_filters_are_kept_in_the_state_and_absent_ones_not_shown() -> None:
    filters = {
        "change-types": ["created", "deleted"],
        "kinds": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
        "namespaces": ["prod"],
        "exclude-namespaces": ["kube-system"],
        "include-patch": True,
    }
    table = SubscriptionTable()
    [(_, value)] = apply(table, create(**filters)).writes
    state = json.loads(value)
    assert {name: state[name] for name in filters} == filters
    [(_, plain)] = apply(SubscriptionTable(), create()).writes
    assert not set(filters) & set(json.loads(plain))


def test_create_of_existing_is_rejected_and_changes_nothing() -> None:
    table = SubscriptionTable()
    apply(table, create())
    again = apply(table, create(**{"callback-url": "http://10.0.0.9/x"}))
    assert again.result.error.code == "already-exists"
    assert again.writes == []
    assert again.change is None
    assert table.subscriptions["inst-1/sub-1"].callback_url == "http://10.0.0.5:8080/notify"


def test_update_keeps_baseline_and_notify_bookkeeping() -> None:
    table = SubscriptionTable()
    apply(table, create())
    update = {**create(**{"min-notify-interval": 0}), "action": "update", "command-id": "c-2"}
    applied = apply(table, update)
    assert applied.result.status == "accepted"
    assert applied.change.kind == "updated"
    state = table.subscriptions["inst-1/sub-1"]
    assert state.min_notify_interval == 0
    assert state.created_at == "2026-11-24T10:15:29.000Z"


def test_update_and_delete_of_missing_are_not_found() -> None:
    table = SubscriptionTable()
    update = {**create(), "action": "update"}
    assert apply(table, update).result.error.code == "not-found"
    delete = {
        "command-id": "c-3",
        "action": "delete",
        "instance-id": "inst-1",
        "subscription-name": "sub-1",
    }
    assert apply(table, delete).result.error.code == "not-found"


def test_delete_writes_a_tombstone() -> None:
    table = SubscriptionTable()
    apply(table, create())
    delete = {
        "command-id": "c-3",
        "action": "delete",
        "instance-id": "inst-1",
        "subscription-name": "sub-1",
    }
    applied = apply(table, delete)
    assert applied.result.status == "accepted"
    assert applied.writes == [("inst-1/sub-1", None)]
    assert table.of_instance("inst-1") == []


@pytest.mark.parametrize(
    ("address", "allow", "deny", "refused"),
    [
        ("10.0.0.5", [], ["10.0.0.0/8"], True),
        ("10.0.0.5", ["192.168.0.0/16"], [], True),
        ("192.168.1.1", ["192.168.0.0/16"], [], False),
        ("192.168.1.1", ["192.168.0.0/16"], ["192.168.1.0/24"], True),
        ("::1", [], ["10.0.0.0/8"], False),
    ],
)
def test_network_fence_at_command_time(
    address: str, allow: list[str], deny: list[str], refused: bool
) -> None:
    applied = apply(
        SubscriptionTable(),
        create(),
        callback_addresses=[ipaddress.ip_address(address)],
        allow_networks=[ipaddress.ip_network(n) for n in allow],
        deny_networks=[ipaddress.ip_network(n) for n in deny],
    )
    assert (applied.result.status == "rejected") is refused
    if refused:
        assert applied.result.error.code == "forbidden-network"


def test_secret_needs_a_key_to_be_stored() -> None:
    without = apply(SubscriptionTable(), create(secret=SECRET))
    assert without.result.error.code == "invalid-secret"
    with_key = apply(SubscriptionTable(), create(secret=SECRET), secrets_enabled=True)
    assert with_key.result.status == "accepted"
    assert with_key.change.secret.get_secret_value() == SECRET
    assert SECRET not in with_key.writes[0][1].decode()
    assert json.loads(with_key.writes[0][1])["signed"] is True


def test_cps_subscribe_and_unsubscribe_persist_under_cps_key() -> None:
    table = SubscriptionTable()
    sub = {
        "command-id": "c-4",
        "action": "subscribe-delta-notification",
        "dataspace": "ds1",
        "anchors": ["inst-1"],
    }
    applied = apply(table, sub)
    assert isinstance(parse(sub), CpsCommand)
    assert applied.result.status == "accepted"
    [(key, value)] = applied.writes
    assert key == "cps/ds1"
    assert json.loads(value)["anchors"] == ["inst-1"]
    unsub = {
        "command-id": "c-5",
        "action": "unsubscribe-delta-notification",
        "dataspace": "ds1",
        "anchors": [],
    }
    assert apply(table, unsub).writes == [("cps/ds1", None)]
    assert "ds1" not in table.cps


def test_checked_in_schemas_equal_the_generated_ones() -> None:
    for name, content in generated().items():
        assert (SCHEMA_DIR / name).read_text() == content, f"regenerate schemas/{name}"


def test_contract_examples_validate_against_the_command_schema() -> None:
    schema = json.loads((SCHEMA_DIR / "subscription-command.schema.json").read_text())
    examples = [
        create(metadata={"owner": "so"}),
        {
            "command-id": "c-3",
            "action": "delete",
            "instance-id": "inst-1",
            "subscription-name": "sub-1",
        },
        {
            "command-id": "c-4",
            "action": "subscribe-delta-notification",
            "dataspace": "ds1",
            "anchors": ["inst-1"],
        },
        {
            "command-id": "c-5",
            "action": "unsubscribe-delta-notification",
            "dataspace": "ds1",
            "anchors": [],
        },
    ]
    for example in examples:
        jsonschema.validate(example, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(create(name="a/b"), schema)
