"""The notifier's rules without a broker: commands, deltas, due windows, reports, restore.

Every test drives :class:`NotifierRules` the way the loop does — one :class:`Turn` per
transaction, its clock set by hand — and asserts on what the turn would commit (records,
delivery jobs, cancellations). No Kafka, no HTTP, no sleeping: time is ``turn.now`` and the
deltas' ``observed_at``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet

from deltawatch.compacted_table import TableEntry
from deltawatch.processing_core import OutputRecord
from deltawatch.settings import NotifierSettings
from services.notifier.command_handling import CommandContext
from services.notifier.commands import parse_command
from services.notifier.cps.directory import CpsDirectory
from services.notifier.cps.subscriptions import SUBSCRIBE, apply_command, encode_state
from services.notifier.delivery.callback_client import AttemptResult
from services.notifier.delivery.deliveries import AttemptReport, DeliveryJob
from services.notifier.delivery.retry_policy import Verdict
from services.notifier.delta_input import DeltaInput
from services.notifier.net_delta import ResourceChanges
from services.notifier.restored_state import restore_partitions
from services.notifier.rules import NotifierRules
from services.notifier.turn import Turn

T0 = 1_700_000_000.0
"""Epoch seconds every test's clock starts from."""
KEY = "inst-1/sub-1"
LANE = "cps/ds1/inst-1"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

# --- builders ------------------------------------------------------------------------------


def make_settings(**overrides: Any) -> NotifierSettings:
    return NotifierSettings(**overrides)


def make_rules(
    settings: NotifierSettings | None = None, owned: Iterable[int] = (0,)
) -> NotifierRules:
    rules = NotifierRules(settings or make_settings(), CpsDirectory())
    rules.owned = set(owned)
    return rules


def at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def pod(name: str, phase: str = "Running", version: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "ns"}
    if version is not None:
        metadata["resourceVersion"] = version
    return {
        "name": name,
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {"kind": "Pod", "metadata": metadata, "status": {"phase": phase}},
    }


def send_command(
    rules: NotifierRules,
    turn: Turn,
    document: dict[str, Any] | bytes,
    *,
    sent_at: float = T0,
    partition: int = 0,
    secrets_enabled: bool = False,
) -> None:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    parsed = parse_command(raw, f"commands/{partition}/1")
    context = CommandContext(now=at(turn.now), sent_at=at(sent_at), secrets_enabled=secrets_enabled)
    rules.on_command(parsed, context, partition, turn)


def create(
    rules: NotifierRules,
    turn: Turn,
    *,
    interval: int = 0,
    instance: str = "inst-1",
    name: str = "sub-1",
    sent_at: float = T0,
    partition: int = 0,
    command_id: str = "c-create",
    **extra: Any,
) -> None:
    subscription = {
        "name": name,
        "callback-url": "http://10.0.0.5:8080/notify",
        "min-notify-interval": interval,
        "metadata": {"owner": "so"},
        **extra,
    }
    send_command(
        rules,
        turn,
        {
            "command-id": command_id,
            "action": "create",
            "instance-id": instance,
            "subscription": subscription,
        },
        sent_at=sent_at,
        partition=partition,
        secrets_enabled=rules.box is not None,
    )


def delete(rules: NotifierRules, turn: Turn, name: str = "sub-1") -> None:
    send_command(
        rules,
        turn,
        {
            "command-id": "c-delete",
            "action": "delete",
            "instance-id": "inst-1",
            "subscription-name": name,
        },
    )


def cps(
    rules: NotifierRules,
    turn: Turn,
    action: str,
    anchors: list[str] | None,
    *,
    sent_at: float = T0,
) -> None:
    document: dict[str, Any] = {"command-id": f"c-{action}", "action": action, "dataspace": "ds1"}
    if anchors is not None:
        document["anchors"] = anchors
    send_command(rules, turn, document, sent_at=sent_at)


def delta(
    rules: NotifierRules,
    turn: Turn,
    observed_at: float | None = None,
    *,
    instance: str = "inst-1",
    partition: int = 0,
    **changes: list[dict[str, Any]],
) -> None:
    when = turn.now if observed_at is None else observed_at
    rules.on_delta(
        DeltaInput(instance, partition, ResourceChanges.from_json(changes, "east"), when), turn
    )


def report(
    job: DeliveryJob,
    outcome: str,
    *,
    at_s: float,
    status: int,
    attempts: int = 1,
    first_attempt_at: float | None = None,
    reason: str = "",
    webhook_id: str | None = None,
) -> AttemptReport:
    result = AttemptResult(at_s, status, None if status else "timed out", ended_at=at_s + 0.1)
    return AttemptReport(
        job.key,
        webhook_id or job.webhook_id,
        result,
        attempts,
        first_attempt_at if first_attempt_at is not None else at_s,
        Verdict(outcome, delay_s=1.0 if outcome == "retry" else 0.0, reason=reason),  # type: ignore[arg-type]
    )


def on(turn: Turn, topic: str) -> list[OutputRecord]:
    return [r for r in turn.records if r.topic == topic]


def value(record: OutputRecord) -> Any:
    return None if record.value is None else json.loads(record.value)


def body(job: DeliveryJob) -> Any:
    return json.loads(job.body)


def changes(job: DeliveryJob) -> Any:
    return body(job)["resource-changes"]


def only_job(turn: Turn) -> DeliveryJob:
    assert len(turn.jobs) == 1, turn.jobs
    return turn.jobs[0]


def subscribed(
    settings: NotifierSettings | None = None, interval: int = 0, **extra: Any
) -> NotifierRules:
    """Rules with subscription ``inst-1/sub-1`` created at T0 (its turn already sealed)."""
    rules = make_rules(settings)
    turn = Turn(now=T0)
    create(rules, turn, interval=interval, **extra)
    rules.seal(turn)
    return rules


def first_job(rules: NotifierRules, now: float = T0 + 1, **delta_changes: Any) -> DeliveryJob:
    """Feed one delta observed at ``now`` and take the notification it forms at once."""
    turn = Turn(now=now)
    delta(rules, turn, **(delta_changes or {"created": [pod("a")]}))
    rules.take_due(turn)
    rules.seal(turn)
    return only_job(turn)


def next_turn(rules: NotifierRules, now: float) -> Turn:
    """A turn with nothing consumed: just the due windows, sealed."""
    turn = Turn(now=now)
    rules.take_due(turn)
    rules.seal(turn)
    return turn


def restored(settings: NotifierSettings, turns: Iterable[Turn]) -> NotifierRules:
    """New rules restored from what ``turns`` committed (partition 0)."""
    committed = list(turns)
    fresh = make_rules(settings, owned=())
    outbox = settings.changelog_topic("notifier", "outbox")
    restore_partitions(
        fresh,
        [0],
        table_of(committed, settings.subscriptions_topic),
        table_of(committed, outbox),
    )
    return fresh


def table_of(turns: Iterable[Turn], topic: str) -> dict[str, TableEntry]:
    """What a compacted topic holds after ``turns`` (latest value per key, tombstones gone)."""
    table: dict[str, TableEntry] = {}
    offset = 0
    for turn in turns:
        for record in on(turn, topic):
            assert record.key is not None
            assert record.partition is not None
            key = record.key.decode()
            if record.value is None:
                table.pop(key, None)
            else:
                table[key] = TableEntry(record.partition, offset, 0, record.value)
            offset += 1
    return table


# --- 1. commands ---------------------------------------------------------------------------


def test_create_answers_accepted_and_writes_the_state_on_its_partition() -> None:
    settings = make_settings()
    rules = make_rules(settings)
    turn = Turn(now=T0 + 2)
    create(rules, turn, interval=5, sent_at=T0)
    rules.seal(turn)

    [result] = on(turn, settings.command_results_topic)
    assert result.key == b"c-create"
    answer = value(result)
    assert answer["status"] == "accepted"
    assert answer["error"] is None
    assert (answer["action"], answer["instance-id"], answer["subscription-name"]) == (
        "create",
        "inst-1",
        "sub-1",
    )
    assert answer["subscription"]["callback-url"] == "http://10.0.0.5:8080/notify"

    [state] = on(turn, settings.subscriptions_topic)
    assert (state.partition, state.key) == (0, KEY.encode())
    written = value(state)
    assert written["min-notify-interval"] == 5
    assert written["metadata"] == {"owner": "so"}
    assert written["created-at-ms"] == int(T0 * 1000)  # the command's record time, not now
    assert written["signed"] is False

    [outbox] = on(turn, rules.outbox_topic)
    assert (outbox.partition, outbox.key) == (0, KEY.encode())
    assert value(outbox)["in-flight"] is None
    target = rules.target(KEY)
    assert target is not None
    assert (target.url, target.key, target.interval_s) == ("http://10.0.0.5:8080/notify", None, 5)
    assert turn.jobs == []


def test_malformed_command_is_rejected_and_writes_no_state() -> None:
    settings = make_settings()
    rules = make_rules(settings)
    turn = Turn(now=T0)
    send_command(rules, turn, b"{not json")
    rules.seal(turn)

    [result] = turn.records
    assert result.topic == settings.command_results_topic
    assert result.key == b"commands/0/1"  # no command-id readable: the record's position
    answer = value(result)
    assert answer["status"] == "rejected"
    assert answer["error"]["code"] == "malformed-json"
    assert answer["command-id"] == "commands/0/1"
    assert turn.jobs == []
    assert not turn.dirty_outbox


def test_invalid_and_conflicting_commands_leave_the_state_alone() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=5)
    turn = Turn(now=T0 + 1)
    create(rules, turn, interval=99, command_id="c-again")  # already exists
    create(rules, turn, name="sub-2", command_id="c-url", **{"callback-url": "ftp://x/y"})
    create(rules, turn, name="sub-3", command_id="c-secret", secret=SECRET)  # no secret key
    send_command(
        rules,
        turn,
        {
            "command-id": "c-missing",
            "action": "delete",
            "instance-id": "inst-1",
            "subscription-name": "nope",
        },
    )
    rules.seal(turn)

    codes = {
        r.key.decode(): value(r)["error"]["code"]
        for r in on(turn, settings.command_results_topic)
        if r.key is not None
    }
    assert codes == {
        "c-again": "already-exists",
        "c-url": "invalid-url",
        "c-secret": "invalid-secret",
        "c-missing": "not-found",
    }
    assert on(turn, settings.subscriptions_topic) == []
    assert on(turn, rules.outbox_topic) == []
    target = rules.target(KEY)
    assert target is not None
    assert target.interval_s == 5
    assert rules.target("inst-1/sub-2") is None


def test_a_secret_is_sealed_in_the_outbox_and_opens_for_signing() -> None:
    settings = make_settings(secret_key=Fernet.generate_key().decode())
    rules = make_rules(settings)
    turn = Turn(now=T0)
    create(rules, turn, secret=SECRET)
    rules.seal(turn)

    assert value(on(turn, settings.command_results_topic)[0])["status"] == "accepted"
    assert value(on(turn, settings.subscriptions_topic)[0])["signed"] is True
    sealed = value(on(turn, rules.outbox_topic)[0])["sealed-secret"]
    assert sealed
    assert SECRET not in sealed
    assert all(SECRET.encode() not in (r.value or b"") for r in turn.records)
    target = rules.target(KEY)
    assert target is not None
    assert target.key is not None
    assert target.problem is None


# --- 2. throttle -----------------------------------------------------------------------------


def test_first_delta_goes_out_at_once_and_the_next_waits_for_the_window() -> None:
    rules = subscribed(interval=10)
    job = first_job(rules, now=T0 + 1)
    assert changes(job)["created"] == [pod("a")]

    # Delivered at T0+1.5, the exchange ending at T0+1.6: the window runs to T0+11.6.
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1.5, status=200), turn)
    delta(rules, turn, modified=[pod("a", "Failed")])
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []

    assert next_turn(rules, T0 + 11.5).jobs == []
    later = next_turn(rules, T0 + 11.7)
    second = only_job(later)
    assert changes(second)["modified"] == [pod("a", "Failed")]
    assert second.webhook_id != job.webhook_id
    assert next_turn(rules, T0 + 30).jobs == []  # told once, nothing pending since


def test_interval_zero_still_keeps_one_notification_in_flight() -> None:
    rules = subscribed(interval=0)
    job = first_job(rules)

    turn = Turn(now=T0 + 2)
    delta(rules, turn, created=[pod("b")])
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []  # the first one is still out

    turn = Turn(now=T0 + 3)
    rules.on_report(report(job, "delivered", at_s=T0 + 2.5, status=204), turn)
    rules.take_due(turn)
    assert changes(only_job(turn))["created"] == [pod("b")]


def test_each_subscription_has_its_own_window() -> None:
    rules = subscribed(interval=10)
    turn = Turn(now=T0)
    create(rules, turn, name="fast", interval=0, command_id="c-fast")
    rules.seal(turn)

    turn = Turn(now=T0 + 1)
    delta(rules, turn, created=[pod("a")])
    rules.take_due(turn)
    assert sorted(j.key for j in turn.jobs) == ["inst-1/fast", KEY]
    assert {body(j)["subscription-name"] for j in turn.jobs} == {"fast", "sub-1"}


# --- 3. coalescing ------------------------------------------------------------------------


def test_changes_inside_the_window_go_out_as_one_net_change() -> None:
    rules = subscribed(interval=10)
    job = first_job(rules, now=T0 + 1, created=[pod("a")])
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1, status=200), turn)
    for step in (
        {"modified": [pod("a", "P1")], "created": [pod("b", "Pending")]},
        {"modified": [pod("a", "P2")], "created": [pod("c")]},
        {"modified": [pod("b", "Running")], "deleted": [pod("c")]},
    ):
        delta(rules, turn, **step)
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []

    second = only_job(next_turn(rules, T0 + 12))
    assert changes(second) == {
        "created": [pod("b", "Running")],  # created inside the window: a creation, latest status
        "deleted": [],  # c came and went inside the window: never told
        "modified": [pod("a", "P2")],
    }
    assert body(second)["instance-id"] == "inst-1"
    assert body(second)["metadata"] == {"owner": "so"}


def test_created_then_deleted_inside_the_window_sends_nothing() -> None:
    rules = subscribed(interval=10)
    job = first_job(rules, now=T0 + 1)
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1, status=200), turn)
    delta(rules, turn, created=[pod("x")])
    delta(rules, turn, deleted=[pod("x")])
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []

    assert next_turn(rules, T0 + 12).jobs == []
    # The lane is not stuck: the next change goes out at once (the window is open).
    later = first_job(rules, now=T0 + 20, modified=[pod("a", "Failed")])
    assert changes(later)["modified"] == [pod("a", "Failed")]


# --- 4. baseline ---------------------------------------------------------------------------


def test_changes_observed_before_the_subscription_are_not_told() -> None:
    rules = subscribed(interval=0)  # created-at = T0 (the command's record time)
    turn = Turn(now=T0 + 5)
    delta(rules, turn, T0 - 60, created=[pod("old")])
    rules.take_due(turn)
    assert turn.jobs == []

    turn = Turn(now=T0 + 6)
    delta(rules, turn, T0, created=[pod("new")])  # observed at the baseline itself: told
    rules.take_due(turn)
    assert changes(only_job(turn))["created"] == [pod("new")]


def test_the_baseline_is_the_command_record_time_not_the_processing_time() -> None:
    rules = make_rules()
    turn = Turn(now=T0 + 30)  # processed 30 s after it was sent
    create(rules, turn, sent_at=T0)
    delta(rules, turn, T0 + 1, created=[pod("a")])
    rules.take_due(turn)
    assert changes(only_job(turn))["created"] == [pod("a")]


# --- 5. ignore-fields -------------------------------------------------------------------------


def test_a_change_to_ignored_fields_only_is_not_told() -> None:
    rules = subscribed(interval=0, **{"ignore-fields": ["metadata.resourceVersion"]})
    job = first_job(rules, created=[pod("a", "Running", "1")])
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1.5, status=200), turn)
    delta(rules, turn, modified=[pod("a", "Running", "2")])  # only resourceVersion moved
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []
    assert value(on(turn, rules.outbox_topic)[0])["ignore-fields-seen"]  # memory persisted

    turn = Turn(now=T0 + 3)
    delta(rules, turn, modified=[pod("a", "Failed", "3")])
    rules.take_due(turn)
    assert changes(only_job(turn)) == {
        "created": [],
        "deleted": [],
        "modified": [pod("a", "Failed", "3")],
    }


# --- 5b. filters and patches ----------------------------------------------------------------


def in_namespace(name: str, namespace: str, phase: str = "Running") -> dict[str, Any]:
    return {**pod(name, phase), "namespace": namespace}


def update(rules: NotifierRules, turn: Turn, interval: int = 0, **extra: Any) -> None:
    subscription = {"name": "sub-1", "callback-url": "http://10.0.0.5:8080/notify", **extra}
    subscription["min-notify-interval"] = interval
    send_command(
        rules,
        turn,
        {
            "command-id": "c-update",
            "action": "update",
            "instance-id": "inst-1",
            "subscription": subscription,
        },
    )


def test_a_filtered_out_change_opens_no_window_and_sends_nothing() -> None:
    rules = subscribed(interval=10, **{"change-types": ["created"]})
    turn = Turn(now=T0 + 1)
    delta(rules, turn, modified=[pod("a", "Failed")], deleted=[pod("b")])
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []
    # Had the modification gone out, this create would wait for its window to end.
    turn = Turn(now=T0 + 2)
    delta(rules, turn, created=[pod("c")], modified=[pod("a", "Pending")])
    rules.take_due(turn)
    assert changes(only_job(turn)) == {"created": [pod("c")], "deleted": [], "modified": []}


def test_kinds_and_namespaces_select_what_is_told() -> None:
    deployment = {**pod("d"), "GVK": {"Group": "apps", "Version": "v1", "Kind": "Deployment"}}
    rules = subscribed(
        kinds=[{"group": "", "version": "v1", "kind": "Pod"}], namespaces=["ns", "prod"]
    )
    job = first_job(rules, created=[pod("a"), deployment, in_namespace("b", "dev")])
    assert changes(job)["created"] == [pod("a")]


def test_a_recreation_is_no_change_for_a_subscriber_without_modified() -> None:
    rules = subscribed(interval=10, **{"change-types": ["created", "deleted"]})
    job = first_job(rules, created=[pod("x")])
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1.5, status=200), turn)
    delta(rules, turn, deleted=[pod("a")])
    delta(rules, turn, created=[pod("a", "Pending")])  # coalesces into a modification
    rules.seal(turn)
    turn = next_turn(rules, T0 + 12)
    assert turn.jobs == []  # the net change held nothing it wants: no empty callback
    turn = Turn(now=T0 + 13)
    delta(rules, turn, deleted=[pod("x")])
    rules.take_due(turn)
    assert changes(only_job(turn))["deleted"] == [pod("x")]  # and the lane is free


def test_an_updated_filter_applies_from_then_on() -> None:
    rules = subscribed(namespaces=["ns"])
    turn = Turn(now=T0 + 1)
    delta(rules, turn, created=[in_namespace("b", "dev")])
    update(rules, turn)  # no namespaces any more
    rules.take_due(turn)
    assert turn.jobs == []
    turn = Turn(now=T0 + 2)
    delta(rules, turn, modified=[in_namespace("b", "dev", "Failed")])
    rules.take_due(turn)
    # Never told of b's creation, it is told of b's modification (the baseline rule).
    assert changes(only_job(turn))["modified"] == [in_namespace("b", "dev", "Failed")]


def test_include_patch_tells_the_net_patch_of_a_throttle_window() -> None:
    rules = subscribed(interval=10, **{"include-patch": True})
    job = first_job(rules, created=[pod("a", "Running", "1")])
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1.5, status=200), turn)
    delta(rules, turn, modified=[pod("a", "Pending", "2")])
    delta(rules, turn, modified=[pod("a", "Failed", "3")])
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []
    turn = next_turn(rules, T0 + 12)
    [told] = changes(only_job(turn))["modified"]
    assert told == {
        **pod("a", "Failed", "3"),
        "patch": {"metadata": {"resourceVersion": "3"}, "status": {"phase": "Failed"}},
    }


def test_told_objects_survive_a_restart() -> None:
    settings = make_settings()
    rules = make_rules(settings)
    turns = [Turn(now=T0)]
    create(rules, turns[0], **{"include-patch": True})
    delta(rules, turns[0], created=[pod("a", "Running", "1")])
    rules.take_due(turns[0])
    rules.seal(turns[0])
    job = only_job(turns[0])
    turns.append(Turn(now=T0 + 1))
    rules.on_report(report(job, "delivered", at_s=T0 + 0.5, status=200), turns[1])
    rules.seal(turns[1])

    fresh = restored(settings, turns)
    turn = Turn(now=T0 + 2)
    delta(fresh, turn, modified=[pod("a", "Running", "2")])
    fresh.take_due(turn)
    [told] = changes(only_job(turn))["modified"]
    assert told["patch"] == {"metadata": {"resourceVersion": "2"}}  # not the whole object


# --- 6. delivery reports ------------------------------------------------------------------


def test_a_retry_keeps_the_notification_in_flight() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=0)
    job = first_job(rules)

    turn = Turn(now=T0 + 3)
    rules.on_report(
        report(job, "retry", at_s=T0 + 2, status=503, reason="HTTP 503"),
        turn,
    )
    delta(rules, turn, created=[pod("b")])
    rules.take_due(turn)
    rules.seal(turn)

    assert turn.jobs == []  # still out: no second notification beside it
    assert on(turn, settings.dlq_topic) == []
    [outbox] = on(turn, rules.outbox_topic)
    flight = value(outbox)["in-flight"]
    assert flight["webhook-id"] == job.webhook_id
    assert flight["body"] == job.body.decode()
    assert (flight["attempts"], flight["last-status"]) == (1, 503)
    [state] = on(turn, settings.subscriptions_topic)
    assert value(state)["last-notify-status"] == 503
    assert value(state)["last-notify-time"] == "2023-11-14T22:13:22.000Z"


def test_delivered_frees_the_lane_for_the_next_change() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=0)
    job = first_job(rules)
    turn = Turn(now=T0 + 2)
    delta(rules, turn, created=[pod("b")])
    rules.take_due(turn)
    assert turn.jobs == []

    turn = Turn(now=T0 + 3)
    rules.on_report(report(job, "delivered", at_s=T0 + 2.5, status=200), turn)
    rules.take_due(turn)
    rules.seal(turn)
    second = only_job(turn)
    assert changes(second)["created"] == [pod("b")]
    assert on(turn, settings.dlq_topic) == []
    flight = value(on(turn, rules.outbox_topic)[0])["in-flight"]
    assert flight["webhook-id"] == second.webhook_id  # the new one, durable before its POST
    assert value(on(turn, settings.subscriptions_topic)[0])["last-notify-status"] == 200


def test_giving_up_writes_one_dead_letter_and_frees_the_lane() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=0)
    job = first_job(rules)

    turn = Turn(now=T0 + 9)
    rules.on_report(report(job, "retry", at_s=T0 + 2, status=500, reason="HTTP 500"), turn)
    rules.on_report(
        report(
            job,
            "dead",
            at_s=T0 + 8,
            status=500,
            attempts=3,
            first_attempt_at=T0 + 2,
            reason="HTTP 500 after 3 attempts",
        ),
        turn,
    )
    rules.seal(turn)

    [letter_record] = on(turn, settings.dlq_topic)
    assert letter_record.key == KEY.encode()
    letter = value(letter_record)
    assert letter["webhook-id"] == job.webhook_id
    assert letter["attempts"] == 3
    assert letter["payload"] == body(job)
    assert letter["last-status"] == 500
    assert letter["last-error"] == "HTTP 500 after 3 attempts"
    assert (letter["instance-id"], letter["subscription-name"]) == ("inst-1", "sub-1")
    assert letter["first-attempt-at"] < letter["last-attempt-at"]
    assert value(on(turn, rules.outbox_topic)[0])["in-flight"] is None

    # The subscription keeps working: the next change is a new notification.
    later = first_job(rules, now=T0 + 10, created=[pod("b")])
    assert later.webhook_id != job.webhook_id


def test_a_report_for_another_notification_is_ignored() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=0)
    job = first_job(rules)

    turn = Turn(now=T0 + 3)
    rules.on_report(
        report(job, "dead", at_s=T0 + 2, status=400, webhook_id="msg_stale", reason="x"), turn
    )
    rules.take_due(turn)
    assert not turn
    assert turn.records == []
    assert turn.jobs == []

    # The notification really in flight is untouched: its own report still lands.
    turn = Turn(now=T0 + 4)
    rules.on_report(report(job, "dead", at_s=T0 + 3, status=400, reason="HTTP 400"), turn)
    assert [value(r)["webhook-id"] for r in on(turn, settings.dlq_topic)] == [job.webhook_id]


# --- 7. delete -----------------------------------------------------------------------------


def test_delete_cancels_the_delivery_tombstones_the_outbox_and_stops_deltas() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=0)
    job = first_job(rules)

    turn = Turn(now=T0 + 2)
    delete(rules, turn)
    rules.seal(turn)
    assert turn.cancelled == [KEY]
    assert value(on(turn, settings.command_results_topic)[0])["status"] == "accepted"
    [state] = on(turn, settings.subscriptions_topic)
    assert (state.key, state.value, state.partition) == (KEY.encode(), None, 0)
    [outbox] = on(turn, rules.outbox_topic)
    assert (outbox.key, outbox.value, outbox.partition) == (KEY.encode(), None, 0)
    assert rules.target(KEY) is None

    turn = Turn(now=T0 + 3)
    delta(rules, turn, created=[pod("b")])
    rules.on_report(report(job, "dead", at_s=T0 + 2.5, status=400, reason="late"), turn)
    rules.take_due(turn)
    rules.seal(turn)
    assert turn.jobs == []
    assert turn.records == []


# --- 8. restore ----------------------------------------------------------------------------


def told_a_then_b_pending(
    rules: NotifierRules, outcome: str, **result: Any
) -> tuple[list[Turn], DeliveryJob]:
    """A subscription (interval 10, ignoring resourceVersion) told of ``a``; the attempt
    reported with ``outcome``; then ``b`` created inside the window. The two turns and a's job."""
    turns = [Turn(now=T0)]
    create(rules, turns[0], interval=10, **{"ignore-fields": ["metadata.resourceVersion"]})
    delta(rules, turns[0], T0, created=[pod("a", "Running", "1")])
    rules.take_due(turns[0])
    rules.seal(turns[0])
    job = only_job(turns[0])
    turns.append(Turn(now=T0 + 2))
    rules.on_report(report(job, outcome, at_s=T0 + 1, **result), turns[1])
    delta(rules, turns[1], created=[pod("b")])
    rules.take_due(turns[1])
    rules.seal(turns[1])
    assert turns[1].jobs == []
    return turns, job


def test_restore_resumes_the_notification_in_flight_and_keeps_the_pending_change() -> None:
    settings = make_settings()
    rules = make_rules(settings)
    turns, job = told_a_then_b_pending(rules, "retry", status=503, reason="HTTP 503")

    fresh = make_rules(settings, owned=())
    jobs = restore_partitions(
        fresh,
        [0],
        table_of(turns, settings.subscriptions_topic),
        table_of(turns, rules.outbox_topic),
    )
    [resumed] = jobs
    assert (resumed.key, resumed.webhook_id, resumed.body) == (KEY, job.webhook_id, job.body)
    assert resumed.attempts == 1
    assert resumed.first_attempt_at == T0 + 1
    assert resumed.not_before == T0 + 1 + 10  # the last attempt + the interval
    assert fresh.owned == {0}
    target = fresh.target(KEY)
    assert target is not None
    assert target.interval_s == 10

    # The pending change waits behind the resumed notification, then goes out once.
    turn = Turn(now=T0 + 3)
    fresh.take_due(turn)
    assert turn.jobs == []
    turn = Turn(now=T0 + 30)
    fresh.on_report(report(resumed, "delivered", at_s=T0 + 12, status=200), turn)
    fresh.take_due(turn)
    after = only_job(turn)
    assert changes(after)["created"] == [pod("b")]
    # Numbering carried over too: not the restored notification's id again.
    assert after.webhook_id not in (job.webhook_id,)

    # The ignore-fields memory came back: an ignored-only change is still not told.
    turn = Turn(now=T0 + 60)
    fresh.on_report(report(after, "delivered", at_s=T0 + 31, status=200), turn)
    delta(fresh, turn, modified=[pod("a", "Running", "2")])
    fresh.take_due(turn)
    assert turn.jobs == []


def _before_clusters(value: bytes) -> bytes:
    """An outbox record as the release before clusters wrote it: entries without
    ``"cluster"``, ``ignore-fields-seen`` keys without the cluster segment."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "cluster"}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    record = json.loads(value)
    record["lane"] = strip(record["lane"])
    seen = record.get("ignore-fields-seen") or {}
    record["ignore-fields-seen"] = {k.split("/", 1)[1]: v for k, v in seen.items()}
    return json.dumps(record).encode()


def test_outbox_state_from_before_clusters_restores_as_the_notifiers_cluster() -> None:
    settings = make_settings(cluster="east")
    rules = make_rules(settings)
    # b is pending in the window when the upgrade stops the notifier.
    turns, _job = told_a_then_b_pending(rules, "delivered", status=200)
    outbox = {
        key: dataclasses.replace(entry, value=_before_clusters(entry.value))
        for key, entry in table_of(turns, rules.outbox_topic).items()
    }
    assert b'"cluster"' not in outbox[KEY].value

    fresh = make_rules(settings, owned=())
    restore_partitions(fresh, [0], table_of(turns, settings.subscriptions_topic), outbox)
    turn = Turn(now=T0 + 12)
    # The ignored-only change of a (now known as east's) is still not told; b, pending from
    # before the upgrade, goes out once, as east's, next to the change after the upgrade.
    delta(fresh, turn, modified=[pod("a", "Running", "2")], created=[pod("c")])
    fresh.take_due(turn)
    told = changes(only_job(turn))
    assert told["created"] == [pod("b"), pod("c")]
    assert told["modified"] == []


def test_restore_of_an_idle_subscription_starts_nothing_but_tells_the_next_change() -> None:
    settings = make_settings()
    rules = subscribed(settings, interval=0)
    job = first_job(rules)
    turn = Turn(now=T0 + 2)
    rules.on_report(report(job, "delivered", at_s=T0 + 1.5, status=200), turn)
    rules.seal(turn)
    written = [turn]
    # Rebuild the topics from a rules object that wrote everything (the create turn too).
    replay = make_rules(settings)
    first = Turn(now=T0)
    create(replay, first)
    replay.seal(first)
    written.insert(0, first)

    fresh = make_rules(settings, owned=())
    subs = table_of(written, settings.subscriptions_topic)
    outbox = table_of(written, rules.outbox_topic)
    assert restore_partitions(fresh, [0], subs, outbox) == []
    assert changes(first_job(fresh, now=T0 + 5))["created"] == [pod("a")]


# --- 9. revoked partitions -----------------------------------------------------------------


def test_forget_partitions_drops_their_subscriptions_only() -> None:
    rules = make_rules(owned=(0, 1))
    turn = Turn(now=T0)
    create(rules, turn, partition=0)
    create(rules, turn, instance="inst-2", partition=1, command_id="c-2")
    cps(rules, turn, SUBSCRIBE, ["inst-1"])  # the dataspace's state on partition 0
    rules.seal(turn)

    forgotten = rules.forget_partitions([0])
    assert sorted(forgotten) == ["cps/ds1", KEY]
    assert rules.target(KEY) is None
    assert rules.target("inst-2/sub-1") is not None
    assert rules.owned == {1}

    turn = Turn(now=T0 + 1)
    delta(rules, turn, created=[pod("a")])
    delta(rules, turn, instance="inst-2", partition=1, created=[pod("a")])
    rules.take_due(turn)
    assert [j.key for j in turn.jobs] == ["inst-2/sub-1"]
    assert [r for r in turn.records if r.topic == rules.settings.cps_topic] == []


# --- 10. CPS lanes ---------------------------------------------------------------------------


def cps_events(turn: Turn, settings: NotifierSettings) -> list[tuple[bytes | None, Any, int]]:
    return [(r.key, value(r), r.timestamp_ms) for r in on(turn, settings.cps_topic)]


def test_cps_subscribe_writes_the_dataspace_state() -> None:
    settings = make_settings()
    rules = make_rules(settings)
    turn = Turn(now=T0)
    cps(rules, turn, SUBSCRIBE, ["inst-1"])
    rules.seal(turn)
    assert value(on(turn, settings.command_results_topic)[0])["status"] == "accepted"
    [state] = on(turn, settings.subscriptions_topic)
    assert (state.key, state.partition) == (b"cps/ds1", 0)
    assert value(state)["anchors"] == ["inst-1"]
    assert value(state)["anchors-since-ms"] == {"inst-1": int(T0 * 1000)}


def test_cps_lane_publishes_at_once_then_throttles_the_net_change() -> None:
    settings = make_settings(cps_min_notify_interval=5.0)
    rules = make_rules(settings)
    turn = Turn(now=T0)
    cps(rules, turn, SUBSCRIBE, ["inst-1"])
    rules.seal(turn)

    turn = Turn(now=T0 + 1)
    delta(rules, turn, T0 - 10, created=[pod("old")])  # before the baseline: never told
    delta(rules, turn, instance="inst-2", created=[pod("z")])  # anchor not subscribed
    delta(rules, turn, created=[pod("a", "Pending")])
    rules.take_due(turn)
    rules.seal(turn)
    [(key, first, stamp)] = cps_events(turn, settings)
    assert key == b"ds1:inst-1"
    assert stamp == int((T0 + 1) * 1000)
    assert (first["dataspaceName"], first["anchorName"], first["operation"]) == (
        "ds1",
        "inst-1",
        "CREATE",
    )
    assert [(e["action"], e["payload"]) for e in first["data"]] == [
        ("ADD", pod("a", "Pending")["status"])
    ]
    assert turn.jobs == []  # CPS lanes are not callbacks
    [lane] = on(turn, rules.outbox_topic)
    assert (lane.key, lane.partition) == (LANE.encode(), 0)
    assert value(lane)["kind"] == "cps-lane"

    turn = Turn(now=T0 + 2)
    delta(rules, turn, modified=[pod("a", "Running")])
    delta(rules, turn, created=[pod("c")])
    delta(rules, turn, deleted=[pod("c")])  # created and deleted in the window: nothing
    rules.take_due(turn)
    rules.seal(turn)
    assert cps_events(turn, settings) == []

    assert cps_events(next_turn(rules, T0 + 5.9), settings) == []
    later = next_turn(rules, T0 + 6)
    [(_, second, stamp)] = cps_events(later, settings)
    assert stamp - int((T0 + 1) * 1000) >= 5000
    assert second["operation"] == "UPDATE"
    assert [(e["action"], e["payload"]) for e in second["data"]] == [
        ("UPDATE", {"status": {"phase": "Running"}})
    ]
    assert cps_events(next_turn(rules, T0 + 20), settings) == []


def test_cps_unsubscribe_drops_the_lane_and_its_pending_change() -> None:
    settings = make_settings(cps_min_notify_interval=5.0)
    rules = make_rules(settings)
    turn = Turn(now=T0)
    cps(rules, turn, SUBSCRIBE, ["inst-1"])
    rules.seal(turn)
    turn = Turn(now=T0 + 1)
    delta(rules, turn, created=[pod("a")])
    rules.take_due(turn)
    rules.seal(turn)
    assert len(cps_events(turn, settings)) == 1

    turn = Turn(now=T0 + 2)
    delta(rules, turn, modified=[pod("a", "Failed")])  # pending, the window is closed
    rules.take_due(turn)
    rules.seal(turn)

    turn = Turn(now=T0 + 3)
    cps(rules, turn, "unsubscribe-delta-notification", ["inst-1"], sent_at=T0 + 3)
    rules.seal(turn)
    [state] = on(turn, settings.subscriptions_topic)
    assert (state.key, state.value) == (b"cps/ds1", None)  # nothing subscribed: tombstone

    due = next_turn(rules, T0 + 10)
    assert cps_events(due, settings) == []
    assert [(r.key, r.value) for r in on(due, rules.outbox_topic)] == [(LANE.encode(), None)]
    assert LANE not in rules.cps_lanes.lanes

    turn = Turn(now=T0 + 20)
    delta(rules, turn, modified=[pod("a", "Running")])
    rules.take_due(turn)
    rules.seal(turn)
    assert cps_events(turn, settings) == []
    assert on(turn, rules.outbox_topic) == []


def test_cps_state_of_another_replica_comes_from_the_directory() -> None:
    settings = make_settings()
    directory = CpsDirectory()
    ds1 = apply_command(None, "ds1", SUBSCRIBE, ["inst-1"], at_ms=int(T0 * 1000))
    directory.apply("cps/ds1", 3, encode_state(ds1))  # a partition some other replica owns
    rules = NotifierRules(settings, directory)
    rules.owned = {0}
    turn = Turn(now=T0 + 1)
    delta(rules, turn, created=[pod("a")])
    rules.take_due(turn)
    assert [k for k, _, _ in cps_events(turn, settings)] == [b"ds1:inst-1"]

    # On a partition this replica owns, its own (empty) table wins over the directory.
    owner = NotifierRules(settings, directory)
    owner.owned = {0, 3}
    turn = Turn(now=T0 + 1)
    delta(owner, turn, created=[pod("a")])
    owner.take_due(turn)
    assert cps_events(turn, settings) == []


def test_cps_lane_restores_with_its_view() -> None:
    settings = make_settings()
    rules = make_rules(settings)
    turns = [Turn(now=T0)]
    cps(rules, turns[0], SUBSCRIBE, ["inst-1"])
    rules.seal(turns[0])
    turns.append(Turn(now=T0 + 1))
    delta(rules, turns[1], created=[pod("a", "Pending")])
    rules.take_due(turns[1])
    rules.seal(turns[1])

    fresh = restored(settings, turns)
    turn = Turn(now=T0 + 2)
    delta(fresh, turn, modified=[pod("a", "Running")])
    fresh.take_due(turn)
    [(_, event, _)] = cps_events(turn, settings)
    # The view came back: an UPDATE with the merge patch, not a CREATE from scratch.
    assert event["operation"] == "UPDATE"
    assert [(e["action"], e["payload"]) for e in event["data"]] == [
        ("UPDATE", {"status": {"phase": "Running"}})
    ]
