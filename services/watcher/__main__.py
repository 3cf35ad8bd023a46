"""Entry point of ``deltawatch-watcher`` / ``python -m services.watcher``.

Wiring only, in start-up order: settings → HTTP (health, metrics) → topics → producer → read
the subscriptions topic to its end → connect to Kubernetes → one watch per target → follow
subscription changes until SIGTERM. With ``DELTAWATCH_LEADER_ELECTION`` the watches run only
while this process holds the cluster's Lease (:mod:`services.watcher.leadership`). Shutdown
runs the other way: stop the watches, publish and flush what is queued (bounded so the process
exits within 10 s), release the Lease, exit 0. A fatal
producer error (the idempotent producer can no longer guarantee order) exits 1 so the
orchestrator restarts the watcher, whose initial relists then republish the truth.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from kubernetes.client import ApiClient

from deltawatch.avro_serde import AvroSerde
from deltawatch.health import HealthState
from deltawatch.http_server import HttpServer
from deltawatch.logs import get_logger
from deltawatch.settings import WatcherSettings
from deltawatch.shutdown import ShutdownFlag
from deltawatch.topics import contract_topics
from deltawatch.worker_boot import create_topics_when_reachable, settings_or_exit, start_http
from services.watcher import kube_api
from services.watcher.kinds import SubscriptionKinds, WatchTarget, desired_targets
from services.watcher.leader_election import LeaderElection
from services.watcher.leadership import Leadership
from services.watcher.lease_elector import ElectionTiming, LeaseElector
from services.watcher.metrics import WatcherMetrics
from services.watcher.outbox import Outbox
from services.watcher.publisher import Publisher
from services.watcher.subscription_feed import SubscriptionFeed
from services.watcher.supervisor import Supervisor
from services.watcher.target_watch import TargetWatch

SHUTDOWN_BUDGET_S = 8.0

log = get_logger("watcher")


@dataclass(frozen=True)
class Pipeline:
    """What runs between start-up and shutdown: the producer side and the watch side."""

    outbox: Outbox
    publisher: Publisher
    feed: SubscriptionFeed
    subscription_kinds: SubscriptionKinds
    supervisor: Supervisor
    leadership: Leadership
    election: LeaderElection | None
    fatal: threading.Event


def main() -> None:
    settings = settings_or_exit(WatcherSettings, "watcher")
    shutdown = ShutdownFlag().install()
    health = HealthState(["kafka", "subscriptions", "kubernetes"])
    metrics = WatcherMetrics()
    http = start_http(settings, health)
    topics = contract_topics(settings)
    if not create_topics_when_reachable(
        settings, [topics["resource_events"], topics["subscriptions"]], shutdown, health
    ):
        http.stop()
        return
    api = kube_api_or_exit(settings, http)
    pipeline = start_pipeline(settings, api, health, metrics, shutdown)
    if pipeline.election is not None:
        pipeline.election.start()
    follow_subscriptions(settings, pipeline, health, shutdown, http.port)
    shut_down(pipeline, health, shutdown, http)


def kube_api_or_exit(settings: WatcherSettings, http: HttpServer) -> ApiClient:
    """The Kubernetes client; a kubeconfig that cannot be loaded exits 2 (configuration)."""
    try:
        return kube_api.api_client(settings.kubeconfig)
    except Exception as exc:  # a kubeconfig that cannot be loaded is a configuration error
        print(f"deltawatch-watcher: configuration error: KUBECONFIG: {exc}", file=sys.stderr)
        http.stop()
        raise SystemExit(2) from None


def start_pipeline(
    settings: WatcherSettings,
    api: ApiClient,
    health: HealthState,
    metrics: WatcherMetrics,
    shutdown: ShutdownFlag,
) -> Pipeline:
    """Start the publisher and build the feed and the supervisor (no watch runs yet)."""
    fatal = threading.Event()

    def on_fatal(reason: str) -> None:
        log.critical("kafka producer failed fatally; exiting to restart clean", error=reason)
        fatal.set()
        shutdown.request()

    elector = _elector(settings)
    outbox = Outbox(settings.queue_max_bytes)
    publisher = Publisher(
        settings,
        outbox,
        metrics,
        on_fatal,
        may_publish=(lambda: elector.leads_at(time.monotonic())) if elector else lambda: True,
    )
    publisher.start()
    serde = AvroSerde.from_file(
        "resource-event.avsc", settings.resource_events_topic, settings.schema_registry_url
    )
    subscription_kinds = SubscriptionKinds()
    feed = SubscriptionFeed(settings, subscription_kinds)
    first_namespace = settings.namespaces[0] if settings.namespaces else None

    def start_watch(target: WatchTarget) -> TargetWatch:
        return TargetWatch(
            target,
            api=api,
            serde=serde,
            outbox=outbox,
            metrics=metrics,
            health=health,
            cluster=settings.cluster,
            instance_label=settings.instance_label,
            page_size=settings.list_page_size,
            watch_timeout_s=settings.watch_timeout_s,
            cluster_scope_owner=target.namespace == first_namespace,
            leader=leadership.leader,
        )

    supervisor = Supervisor(start_watch, metrics)
    lease = f"{settings.lease_namespace}/{settings.lease_name}" if elector else None
    leadership = Leadership(
        supervisor, publisher, health, metrics, cluster=settings.cluster, lease=lease
    )
    election = _election(settings, api, elector, leadership, health)
    return Pipeline(
        outbox, publisher, feed, subscription_kinds, supervisor, leadership, election, fatal
    )


def _election(
    settings: WatcherSettings,
    api: ApiClient,
    elector: LeaseElector | None,
    leadership: Leadership,
    health: HealthState,
) -> LeaderElection | None:
    """The election loop (not started yet); without leader election the process just leads."""
    if elector is None:
        leadership.lead(None)
        return None
    leadership.stand_by()
    return LeaderElection(
        api,
        elector,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
        on_started=leadership.lead,
        on_stopped=leadership.stand_by,
        on_answer=lambda: health.met("kubernetes"),
    )


def _elector(settings: WatcherSettings) -> LeaseElector | None:
    if not settings.leader_election:
        return None
    timing = ElectionTiming(
        settings.lease_duration_s, settings.lease_renew_deadline_s, settings.lease_retry_period_s
    )
    return LeaseElector(settings.watcher_identity, timing)


def follow_subscriptions(
    settings: WatcherSettings,
    pipeline: Pipeline,
    health: HealthState,
    shutdown: ShutdownFlag,
    port: int,
) -> None:
    """Until SIGTERM (or a fatal producer error): reconcile the watches with the subscriptions.

    The first reconcile waits until the subscriptions topic is read to its end, so the watcher
    never starts watches for kinds it is about to learn are unsubscribed.
    """
    feed, supervisor = pipeline.feed, pipeline.supervisor
    leadership = pipeline.leadership

    def desired() -> frozenset[WatchTarget]:
        return desired_targets(
            settings.resource_types, pipeline.subscription_kinds.kinds(), settings.namespaces
        )

    assigned = False
    while not shutdown.requested:
        health.beat()
        if not assigned:
            try:
                feed.assign()
                assigned = True
            except Exception as exc:
                log.warning("subscriptions topic not readable yet", error=str(exc))
                shutdown.wait(1.0)
                continue
        was_caught_up = feed.caught_up
        changed = feed.poll(0.5)
        if feed.caught_up and (changed or not was_caught_up):
            leadership.reconcile(desired())
            if not was_caught_up:
                health.met("subscriptions")
                log.info(
                    "watcher started",
                    port=port,
                    targets=sorted(str(t) for t in supervisor.targets),
                )


def shut_down(
    pipeline: Pipeline, health: HealthState, shutdown: ShutdownFlag, http: HttpServer
) -> None:
    """Stop the watches, flush what is queued within the budget; exit 1 after a fatal error."""
    health.stopping()
    log.info("watcher stopping", signal=shutdown.signal_name)
    pipeline.leadership.close()
    pipeline.outbox.close()
    unsent = pipeline.publisher.stop(SHUTDOWN_BUDGET_S - 3.5)
    if unsent:
        log.warning("records not acknowledged at shutdown; the next start relists", unsent=unsent)
    if pipeline.election is not None:
        # After the flush: what this term observed is in Kafka before the standby starts.
        pipeline.election.stop(1.0)
    pipeline.feed.close()
    http.stop()
    log.info("watcher stopped")
    if pipeline.fatal.is_set():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
