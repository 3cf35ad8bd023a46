"""The reliability oracle: did the pipeline tell every subscriber the truth, once, in time?

Why a separate, pure module: a fault-injection run is only as good as the judgement at its
end, and a judge that cannot fail proves nothing. So the checks here take plain data (the
callbacks a sink recorded, the cluster's true final state, the sequences read back from the
delta topic) and return findings as text; ``test_oracle.py`` feeds them hand-made wrong
histories and requires each to be caught.

The checks (issue 8):

* **state** — dedupe callbacks by ``webhook-id`` (first receipt wins), apply their net
  changes in order of first receipt to the subscription's baseline (created / modified set
  the object by (cluster, kind, namespace, name), deleted removes it); the result must equal
  the true final state: the same keys and, for each, the same value of every compared field.
  The cluster is part of the name (CONTRACT §10): the same namespace/name in two clusters
  are two objects, so a pipeline that mixes them up leaves one lost, stale or wrong.
* **spurious** — given the :class:`History` of what each cluster really held, every
  ``created`` / ``modified`` entry must tell a version (uid, resourceVersion) its object
  really had *in the cluster the entry names*, and every ``deleted`` entry a uid that was
  really deleted there. A relist of one cluster "deleting" another's objects, or one
  cluster's object told under the other's name, is caught here even when a later callback
  happens to repair the final state.
* **order** — per object, the resourceVersions told go forward: a ``created`` / ``modified``
  entry tells a version newer than any told before for that object (by any earlier
  webhook-id), a ``deleted`` entry one no older. An older version told after a newer one is
  the object going back in time (``went back``: e.g. a deposed watcher's record applied
  after its successor's); the same version told again under another webhook-id is a change
  told twice (``told again``), a duplicate the webhook-id does not dedupe. resourceVersions
  of one cluster are its etcd revisions, so they compare as integers here (the harness's
  own API servers), which Kubernetes does not promise in general.
* **duplicates** — two receipts with the same ``webhook-id`` must carry the same body.
* **throttle** — two consecutive POSTs of a subscription with *different* webhook-ids are
  never closer than its interval, measured at the receiver, minus ``slack_s`` (the sink's
  clock stamps a request when its handler runs, a few ms after the notifier's own clock
  opened the window).
* **sequence** — per instance, the ``sequence`` of the committed delta events is 1, 2, 3 …
  with no gap and no repeat.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str, str]
"""(cluster, kind, namespace, name): how the oracle names an object (not the contract's
ResourceKey). Callback entries carry ``"cluster"`` (CONTRACT §10); an entry without one
names cluster ``""``, which no truth holds."""

THROTTLE_SLACK_S = 0.05


@dataclass(frozen=True)
class Receipt:
    """One POST as the sink saw it (whatever it answered)."""

    webhook_id: str
    received_at: float
    body: bytes
    answered: int

    @property
    def payload(self) -> Obj:
        loaded: Obj = json.loads(self.body)
        return loaded


@dataclass
class Verdict:
    """What one check found; empty ``problems`` means it passed."""

    problems: list[str] = field(default_factory=list)
    duplicates: int = 0
    notifications: int = 0

    def merge(self, other: Verdict) -> Verdict:
        return Verdict(
            self.problems + other.problems,
            self.duplicates + other.duplicates,
            self.notifications + other.notifications,
        )

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_key(entry: Mapping[str, Any]) -> ObjectKey:
    return (
        str(entry.get("cluster") or ""),
        str(entry["GVK"]["Kind"]),
        str(entry.get("namespace") or ""),
        str(entry["name"]),
    )


def object_key(obj: Mapping[str, Any], cluster: str) -> ObjectKey:
    """The key of an object read from the API server of ``cluster``."""
    meta = obj["metadata"]
    return (cluster, str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


@dataclass
class History:
    """Every version each object really had, and every uid really deleted, per cluster.

    Filled by whoever made the changes (the only writer: no controller runs on the local
    API servers), from the API server's own answers, so each version is a stored one."""

    versions: dict[ObjectKey, set[tuple[str, str]]] = field(default_factory=dict)
    deleted: dict[ObjectKey, set[str]] = field(default_factory=dict)

    def saw(self, key: ObjectKey, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        version = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
        self.versions.setdefault(key, set()).add(version)

    def saw_deleted(self, key: ObjectKey, obj: Mapping[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        self.deleted.setdefault(key, set()).add(uid)

    def had(self, key: ObjectKey, told: Mapping[str, Any]) -> bool:
        """Whether ``told`` is a version the object had: one seen, or its *terminating*
        version. A Pod DELETE, even with ``gracePeriodSeconds=0``, first stores the Pod
        with ``deletionTimestamp`` set (a MODIFIED event of its own resourceVersion, which
        the DELETE's answer does not show) and then removes it; so a version carrying
        ``deletionTimestamp``, of a uid really deleted, newer than every version seen of
        that uid, is one the object had."""
        meta = told.get("metadata") or {}
        uid, rv = str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
        seen = self.versions.get(key, set())
        if (uid, rv) in seen:
            return True
        if not meta.get("deletionTimestamp") or uid not in self.deleted.get(key, set()):
            return False
        newest = max((int(v) for u, v in seen if u == uid and v.isdigit()), default=0)
        return rv.isdigit() and int(rv) > newest

    def merge(self, other: History) -> History:
        merged = History(
            {k: set(v) for k, v in self.versions.items()},
            {k: set(v) for k, v in self.deleted.items()},
        )
        for key, versions in other.versions.items():
            merged.versions.setdefault(key, set()).update(versions)
        for key, uids in other.deleted.items():
            merged.deleted.setdefault(key, set()).update(uids)
        return merged


def delivered_in_order(receipts: Iterable[Receipt]) -> tuple[list[Receipt], Verdict]:
    """The delivered notifications, one per webhook-id, in order of first 2xx receipt."""
    verdict = Verdict()
    first: dict[str, Receipt] = {}
    for receipt in sorted(receipts, key=lambda r: r.received_at):
        if not 200 <= receipt.answered < 300:
            continue
        seen = first.get(receipt.webhook_id)
        if seen is None:
            first[receipt.webhook_id] = receipt
            continue
        verdict.duplicates += 1
        if seen.body != receipt.body:
            verdict.problems.append(
                f"webhook-id {receipt.webhook_id} delivered twice with different bodies"
            )
    delivered = list(first.values())
    verdict.notifications = len(delivered)
    return delivered, verdict


def reconstruct(
    baseline: Mapping[ObjectKey, Obj], delivered: Sequence[Receipt]
) -> dict[ObjectKey, Obj]:
    """Apply each notification's net change, in order, to the baseline."""
    state = dict(baseline)
    for receipt in delivered:
        changes = receipt.payload["resource-changes"]
        for entry in changes.get("deleted", []):
            state.pop(entry_key(entry), None)
        for change in ("created", "modified"):
            for entry in changes.get(change, []):
                state[entry_key(entry)] = entry["status"]
    return state


def _field(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def compare_states(
    told: Mapping[ObjectKey, Obj], truth: Mapping[ObjectKey, Obj], fields: Sequence[str]
) -> list[str]:
    """Differences between what the subscriber reconstructed and the cluster's truth."""
    problems = [f"lost: {key} exists but was never told" for key in sorted(truth.keys() - told)]
    problems += [f"stale: {key} was deleted but not told" for key in sorted(told.keys() - truth)]
    for key in sorted(truth.keys() & told.keys()):
        for dotted in fields:
            if _field(told[key], dotted) != _field(truth[key], dotted):
                problems.append(
                    f"wrong: {key} {dotted} told {_field(told[key], dotted)!r}, "
                    f"is {_field(truth[key], dotted)!r}"
                )
    return problems


def spurious_changes(delivered: Sequence[Receipt], history: History) -> list[str]:
    """Entries that tell something the named cluster never did (see :class:`History`)."""
    problems = []
    for receipt in delivered:
        changes = receipt.payload["resource-changes"]
        for change in ("created", "modified"):
            for entry in changes.get(change, []):
                key = entry_key(entry)
                meta = (entry.get("status") or {}).get("metadata") or {}
                version = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
                if not history.had(key, entry.get("status") or {}):
                    problems.append(
                        f"spurious: {receipt.webhook_id} told {key} {change} as uid "
                        f"{version[0]} resourceVersion {version[1]}, a version it never had"
                    )
        for entry in changes.get("deleted", []):
            key = entry_key(entry)
            uid = str(((entry.get("status") or {}).get("metadata") or {}).get("uid", ""))
            if uid not in history.deleted.get(key, set()):
                problems.append(
                    f"spurious: {receipt.webhook_id} told {key} deleted (uid {uid}), "
                    "which was never deleted there"
                )
    return problems


def order_violations(delivered: Sequence[Receipt]) -> list[str]:
    """Entries that tell an object older than, or as old as, what was already told of it
    (see the module's *order*). Deliveries in order of first 2xx receipt, one per id."""
    newest: dict[ObjectKey, tuple[int, str]] = {}
    problems = []
    for receipt in delivered:
        for change, entries in receipt.payload["resource-changes"].items():
            for entry in entries:
                key = entry_key(entry)
                meta = (entry.get("status") or {}).get("metadata") or {}
                rv = str(meta.get("resourceVersion", ""))
                if not rv.isdigit():
                    continue
                told, before = int(rv), newest.get(key)
                if before is not None and told < before[0]:
                    problems.append(
                        f"went back: {receipt.webhook_id} told {key} {change} at "
                        f"resourceVersion {told}, after {before[1]} told {before[0]}"
                    )
                    continue
                if before is not None and told == before[0] and change != "deleted":
                    problems.append(
                        f"told again: {receipt.webhook_id} told {key} {change} at "
                        f"resourceVersion {told}, as {before[1]} did"
                    )
                newest[key] = (told, receipt.webhook_id)
    return problems


def throttle_violations(
    receipts: Iterable[Receipt], interval_s: float, slack_s: float = THROTTLE_SLACK_S
) -> list[str]:
    if interval_s <= 0:
        return []
    ordered = sorted(receipts, key=lambda r: r.received_at)
    problems = []
    for a, b in itertools.pairwise(ordered):
        gap = b.received_at - a.received_at
        if a.webhook_id != b.webhook_id and gap < interval_s - slack_s:
            problems.append(
                f"throttle: {a.webhook_id} then {b.webhook_id} {gap:.3f}s apart "
                f"(interval {interval_s}s)"
            )
    return problems


def check_subscription(
    receipts: Sequence[Receipt],
    baseline: Mapping[ObjectKey, Obj],
    truth: Mapping[ObjectKey, Obj],
    *,
    interval_s: float,
    fields: Sequence[str],
    slack_s: float = THROTTLE_SLACK_S,
    history: History | None = None,
) -> Verdict:
    delivered, verdict = delivered_in_order(receipts)
    verdict.problems += compare_states(reconstruct(baseline, delivered), truth, fields)
    verdict.problems += order_violations(delivered)
    if history is not None:
        verdict.problems += spurious_changes(delivered, history)
    verdict.problems += throttle_violations(receipts, interval_s, slack_s)
    return verdict


def sequence_violations(events: Iterable[tuple[str, int]]) -> list[str]:
    """``events``: (instance-id, sequence) of every committed delta event, in topic order."""
    last: dict[str, int] = defaultdict(int)
    problems = []
    for instance, sequence in events:
        expected = last[instance] + 1
        if sequence != expected:
            kind = "repeat" if sequence <= last[instance] else "gap"
            problems.append(f"sequence {kind}: {instance} expected {expected}, got {sequence}")
        last[instance] = max(last[instance], sequence)
    return problems
