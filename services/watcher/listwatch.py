"""List-then-watch of one target, done the way client-go's reflector does it.

Shaped as kopf shapes it, one layer per job, each a generator small enough to test alone:

* :meth:`ListWatch.run` — the endless loop: discover the kind (waiting, with backoff, while
  its CRD does not exist), run cycles, and after each one relist for the reason it ended.
* :meth:`ListWatch.cycle` — one paginated LIST, then WATCHes from the list's
  resourceVersion for as long as that resourceVersion stays valid. A watch that the server
  ends (its timeout) or that breaks is re-opened from the newest resourceVersion seen
  (bookmarks included), so nothing is missed and nothing repeats; only ``410 Gone`` /
  ``Expired`` (from the watch, or from a stale continue token while paging) ends the cycle.
* :meth:`ListWatch.stream` — one WATCH answer, turned into observations; the line splitting
  that survives multi-megabyte objects lives in :mod:`services.watcher.lines`.

A list is announced (:class:`ListBegan`) only once its first page has answered, so its
resourceVersion is known, and completed by :class:`ListEnded`. A list that fails half way is
simply followed by a new list with a new id: its :class:`ListEnded` never comes, which is how
a consumer knows to discard it. Nothing here blocks on anything but the API server and the
consumer of the generator, so a slow consumer (a slow Kafka) slows the reading down.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient

from deltawatch.logs import get_logger
from services.watcher import kube_api
from services.watcher.backoff import Backoff
from services.watcher.kinds import WatchTarget
from services.watcher.kube_api import (
    AccessDenied,
    KindNotServed,
    KubeError,
    ResourceExpired,
    ServedKind,
)
from services.watcher.records import ListReason, ListRun, Obj

WATCH_EVENT_TYPES = {"ADDED", "MODIFIED", "DELETED"}
ACCESS_RETRY_S = 30.0
"""How often a refused kind is tried again: RBAC changes are rare, and each try is logged by
the API server's audit log."""


@dataclass(frozen=True)
class ListBegan:
    run: ListRun
    served: ServedKind


@dataclass(frozen=True)
class Listed:
    run: ListRun
    obj: Obj


@dataclass(frozen=True)
class ListEnded:
    run: ListRun
    served: ServedKind
    count: int


@dataclass(frozen=True)
class Watched:
    event_type: str
    obj: Obj


Observation = ListBegan | Listed | ListEnded | Watched


class WatchFailed(KubeError):
    """The server sent an ERROR event other than 410: relist, as kopf does."""


@dataclass
class Hooks:
    """What the loop tells its owner besides observations (metrics, readiness, logs)."""

    on_served: Callable[[ServedKind], None] = lambda _served: None
    on_not_served: Callable[[str], None] = lambda _reason: None
    on_watch_restart: Callable[[str], None] = lambda _cause: None
    on_stream: Callable[[kube_api.WatchStream | None], None] = lambda _stream: None
    on_access: Callable[[bool], None] = lambda _allowed: None
    """False when a list or watch was refused (401/403), True when one succeeds after that."""


@dataclass
class ListWatch:
    api: ApiClient
    target: WatchTarget
    label_selector: str
    page_size: int = 500
    watch_timeout_s: int = 300
    stop: threading.Event = field(default_factory=threading.Event)
    hooks: Hooks = field(default_factory=Hooks)
    backoff: Backoff = field(default_factory=Backoff)
    resource_version: str = ""
    denied: bool = False
    """The last list or watch of this kind was refused (401/403)."""

    def __post_init__(self) -> None:
        self.log = get_logger("watcher.listwatch").bind(target=str(self.target))

    # -- layer 1: the endless loop ---------------------------------------------------------

    def run(
        self, served: ServedKind | None = None, reason: ListReason = "initial"
    ) -> Iterator[Observation]:
        """Observations until stopped; ``served`` skips the first discovery."""
        while not self.stop.is_set():
            served = served or self.discover()
            if served is None:
                return
            try:
                reason = yield from self.cycle(served, reason)
            except KindNotServed as exc:
                self.log.warning("kind no longer served; rediscovering", error=str(exc))
                self.hooks.on_not_served(str(exc))
                served = None
                reason = "error"
            except AccessDenied as exc:
                self._refused(exc)
                reason = "error"
            except KubeError as exc:
                self.log.warning("list failed; relisting", error=str(exc))
                reason = "error"
                self._pause()

    def _refused(self, exc: AccessDenied) -> None:
        """The role does not allow this kind: say so once, then ask again now and then.

        Not a crash and not a tight loop: the other kinds go on, readiness is not held back
        (the hook), and a role granted later is picked up at the next try.
        """
        if not self.denied:
            self.log.error(
                "access denied: the watcher's role does not allow list/watch of this kind; "
                f"retrying every {ACCESS_RETRY_S:g} s until it does",
                error=str(exc),
            )
        self.denied = True
        self.hooks.on_access(False)
        self.stop.wait(ACCESS_RETRY_S)

    def discover(self) -> ServedKind | None:
        """The kind as served, retrying with backoff while unknown; None when stopped."""
        wait = Backoff(base_s=0.5, cap_s=30.0)
        while not self.stop.is_set():
            try:
                served = kube_api.discover(self.api, self.target)
            except KindNotServed as exc:
                if wait.failures == 0:
                    self.log.warning("kind not served (yet); will retry", error=str(exc))
                self.hooks.on_not_served(str(exc))
                self.stop.wait(wait.next_delay())
                continue
            except KubeError as exc:
                self.log.warning("discovery failed; will retry", error=str(exc))
                self.stop.wait(wait.next_delay())
                continue
            self.hooks.on_served(served)
            return served
        return None

    # -- layer 2: one list, then watches from its resourceVersion ---------------------------

    def cycle(
        self, served: ServedKind, reason: ListReason
    ) -> Generator[Observation, None, ListReason]:
        try:
            yield from self.list_all(served, reason)
        except ResourceExpired as exc:
            self.log.info("continue token expired; relisting", error=str(exc))
            return "expired"
        self.backoff.reset()
        if self.denied:
            self.denied = False
            self.log.info("access granted; listed")
            self.hooks.on_access(True)
        while not self.stop.is_set():
            opened = time.monotonic()
            try:
                got_events = yield from self.stream(served)
                self.hooks.on_watch_restart("timeout")
                if not got_events and time.monotonic() - opened < 1.0:
                    self._pause()  # a server that ends watches at once must not spin us
            except ResourceExpired as exc:
                self.log.info("resourceVersion expired; relisting", error=str(exc))
                self.hooks.on_watch_restart("expired")
                return "expired"
            except WatchFailed as exc:
                self.log.warning("watch reported an error; relisting", error=str(exc))
                self.hooks.on_watch_restart("error")
                return "error"
            except KindNotServed:
                raise
            except KubeError as exc:
                if self.stop.is_set():
                    break  # our own interrupt() at shutdown
                self.log.warning(
                    "watch broke; re-watching",
                    error=str(exc),
                    resource_version=self.resource_version,
                )
                self.hooks.on_watch_restart("error")
                self._pause()
        return "restart"

    def list_all(self, served: ServedKind, reason: ListReason) -> Iterator[Observation]:
        run: ListRun | None = None
        continue_token: str | None = None
        count = 0
        while True:
            page = kube_api.list_page(
                self.api, served, self.label_selector, self.page_size, continue_token
            )
            metadata = page.get("metadata") or {}
            if run is None:
                run = ListRun(uuid.uuid4().hex, reason, str(metadata.get("resourceVersion", "")))
                yield ListBegan(run, served)
            for item in page.get("items") or []:
                count += 1
                yield Listed(run, _with_kind(item, self.target))
            continue_token = metadata.get("continue") or None
            if not continue_token or self.stop.is_set():
                break
        if self.stop.is_set():
            return
        self.resource_version = run.resource_version
        yield ListEnded(run, served, count)

    # -- layer 3: one watch stream -------------------------------------------------------------

    def stream(self, served: ServedKind) -> Generator[Observation, None, bool]:
        """Yield one WATCH answer's observations; return whether any event came."""
        got_events = False
        watch = kube_api.open_watch(
            self.api, served, self.label_selector, self.resource_version, self.watch_timeout_s
        )
        self.hooks.on_stream(watch)
        try:
            for event in watch.events():
                if self.stop.is_set():
                    return got_events
                got_events = True
                observation = self._observe(event)
                if observation is not None:
                    yield observation
                self.backoff.reset()
        finally:
            self.hooks.on_stream(None)
            watch.close()
        return got_events

    def _observe(self, event: dict[str, Any]) -> Watched | None:
        event_type = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise KubeError(f"watch event without an object: {str(event)[:200]}")
        if event_type == "ERROR":
            code = obj.get("code")
            message = obj.get("message", "")
            if code == 410 or obj.get("reason") in {"Expired", "Gone"}:
                raise ResourceExpired(f"{code} {message}")
            raise WatchFailed(f"{code} {obj.get('reason')} {message}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if event_type == "BOOKMARK":
            if rv:
                self.resource_version = str(rv)
            return None
        if event_type not in WATCH_EVENT_TYPES:
            self.log.warning("unknown watch event type skipped", event_type=event_type)
            return None
        if rv:
            self.resource_version = str(rv)
        return Watched(str(event_type), obj)

    def _pause(self) -> None:
        self.stop.wait(self.backoff.next_delay())


def _with_kind(item: Obj, target: WatchTarget) -> Obj:
    """LIST items lack apiVersion and kind; put them back so every object is self-describing."""
    if "kind" in item and "apiVersion" in item:
        return item
    return {"apiVersion": target.api_version, "kind": target.kind, **item}
