"""Configuration from the environment (CONTRACT §2 and §3), one settings class per worker.

Every worker reads the same shared block (Kafka, topics, cluster, logging) and adds its own.
A bad value must stop the worker at start with one line that names the *environment variable*
(not the Python field) and says why, so :func:`load_settings` turns pydantic's multi-line
report into :class:`SettingsError` with exactly that line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deltawatch.cloud_events import cluster_source
from deltawatch.resource_identity import GroupVersionKind

DEFAULT_RESOURCE_TYPES = (
    "v1/Pod,v1/Service,v1/ConfigMap,v1/PersistentVolumeClaim,apps/v1/Deployment,"
    "apps/v1/StatefulSet,apps/v1/DaemonSet,apps/v1/ReplicaSet,batch/v1/Job"
)


IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _in_cluster_namespace() -> str:
    """The pod's own namespace when running in a cluster, else ``default``."""
    try:
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _process_identity() -> str:
    """Unique per process: two watchers on one host, or a restart, never share an identity."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"


class SettingsError(Exception):
    """A configuration value is unusable; the message is one line naming the variable."""


def _env(name: str) -> Any:
    """Field alias that reads exactly the contract's variable name."""
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """What every worker reads: Kafka, topics, identity, logging, HTTP port."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=True, extra="ignore", populate_by_name=True
    )

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"), min_length=1
    )
    kafka_config: Annotated[dict[str, str | int | float | bool], NoDecode] = Field(
        default_factory=dict, validation_alias=_env("DELTAWATCH_KAFKA_CONFIG")
    )
    schema_registry_url: str | None = Field(
        None, validation_alias=_env("DELTAWATCH_SCHEMA_REGISTRY_URL")
    )
    cluster: str = Field(
        "default", validation_alias=_env("DELTAWATCH_CLUSTER"), min_length=1, pattern=r"^[^/\s]+$"
    )
    http_port: int = Field(0, validation_alias=_env("DELTAWATCH_HTTP_PORT"), ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("DELTAWATCH_LOG_LEVEL")
    )
    log_format: Literal["json", "console"] = Field(
        "json", validation_alias=_env("DELTAWATCH_LOG_FORMAT")
    )
    partitions: int = Field(6, validation_alias=_env("DELTAWATCH_PARTITIONS"), ge=1, le=10000)
    application_id: str = Field(
        "deltawatch",
        validation_alias=_env("DELTAWATCH_APPLICATION_ID"),
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
    )
    heartbeat_s: float = Field(30.0, validation_alias=_env("DELTAWATCH_HEARTBEAT_S"), gt=0)

    commands_topic: str = Field(
        "deltawatch.subscription-commands", validation_alias=_env("DELTAWATCH_COMMANDS_TOPIC")
    )
    command_results_topic: str = Field(
        "deltawatch.subscription-command-results",
        validation_alias=_env("DELTAWATCH_COMMAND_RESULTS_TOPIC"),
    )
    subscriptions_topic: str = Field(
        "deltawatch.subscriptions", validation_alias=_env("DELTAWATCH_SUBSCRIPTIONS_TOPIC")
    )
    resource_events_topic: str = Field(
        "deltawatch.resource-events", validation_alias=_env("DELTAWATCH_RESOURCE_EVENTS_TOPIC")
    )
    deltas_topic: str = Field(
        "deltawatch.resource-deltas", validation_alias=_env("DELTAWATCH_DELTAS_TOPIC")
    )
    cps_topic: str = Field("cps-data-updated-events", validation_alias=_env("DELTAWATCH_CPS_TOPIC"))
    dlq_topic: str = Field(
        "deltawatch.notifications-dlq", validation_alias=_env("DELTAWATCH_DLQ_TOPIC")
    )

    @field_validator("kafka_config", mode="before")
    @classmethod
    def _parse_kafka_config(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object of librdkafka properties")
        return value

    @field_validator(
        "commands_topic",
        "command_results_topic",
        "subscriptions_topic",
        "resource_events_topic",
        "deltas_topic",
        "cps_topic",
        "dlq_topic",
    )
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in {".", ".."}:
            raise ValueError(f"{value!r} is not a legal Kafka topic name")
        return value

    @property
    def source(self) -> str:
        """CloudEvent ``source`` of everything this cluster's pipeline emits."""
        return cluster_source(self.cluster)

    def changelog_topic(self, worker: str, store: str) -> str:
        """Internal state topics follow CONTRACT §3: ``deltawatch.<worker>-<store>-changelog``.

        The ``deltawatch`` prefix is ``DELTAWATCH_APPLICATION_ID`` (as Kafka Streams prefixes
        changelogs with its application.id), so two pipelines can share a cluster.
        """
        return f"{self.application_id}.{worker}-{store}-changelog"


class WatcherSettings(CommonSettings):
    http_port: int = Field(9101, validation_alias=_env("DELTAWATCH_HTTP_PORT"), ge=0, le=65535)
    instance_label: str = Field(
        "k8splugin.io/rb-instance-id",
        validation_alias=_env("DELTAWATCH_INSTANCE_LABEL"),
        min_length=1,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    )
    resource_types: Annotated[list[GroupVersionKind], NoDecode] = Field(
        default_factory=lambda: [
            GroupVersionKind.parse(t) for t in DEFAULT_RESOURCE_TYPES.split(",")
        ],
        validation_alias=_env("DELTAWATCH_RESOURCE_TYPES"),
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("DELTAWATCH_NAMESPACES")
    )
    kubeconfig: str | None = Field(None, validation_alias=_env("KUBECONFIG"))
    list_page_size: int = Field(
        500, validation_alias=_env("DELTAWATCH_LIST_PAGE_SIZE"), ge=1, le=100000
    )
    watch_timeout_s: int = Field(
        300, validation_alias=_env("DELTAWATCH_WATCH_TIMEOUT_S"), ge=0, le=3600
    )  # 0: the server picks (its --min-request-timeout, up to twice it)
    queue_max_bytes: int = Field(
        64 * 1024 * 1024, validation_alias=_env("DELTAWATCH_WATCHER_QUEUE_MAX_BYTES"), ge=1024
    )
    # Active/standby pair: watches run only in the watcher that holds the Lease.
    leader_election: bool = Field(False, validation_alias=_env("DELTAWATCH_LEADER_ELECTION"))
    lease_name: str = Field(
        "", validation_alias=_env("DELTAWATCH_LEASE_NAME"), validate_default=True
    )  # empty: deltawatch-watcher-<cluster>
    lease_namespace: str = Field(
        default_factory=_in_cluster_namespace,
        validation_alias=_env("DELTAWATCH_LEASE_NAMESPACE"),
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    )
    lease_duration_s: int = Field(
        15, validation_alias=_env("DELTAWATCH_LEASE_DURATION_S"), ge=1, le=3600
    )
    lease_renew_deadline_s: float = Field(
        10.0, validation_alias=_env("DELTAWATCH_LEASE_RENEW_DEADLINE_S"), gt=0
    )
    lease_retry_period_s: float = Field(
        2.0, validation_alias=_env("DELTAWATCH_LEASE_RETRY_PERIOD_S"), gt=0
    )
    watcher_identity: str = Field(
        default_factory=_process_identity,
        validation_alias=_env("DELTAWATCH_WATCHER_IDENTITY"),
        min_length=1,
        max_length=253,
    )

    @field_validator("resource_types", mode="before")
    @classmethod
    def _parse_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            items = [t for t in value.split(",") if t.strip()]
            if not items:
                raise ValueError("must name at least one group/version/Kind")
            return [GroupVersionKind.parse(t) for t in items]
        return value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _parse_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("lease_name")
    @classmethod
    def _lease_name(cls, value: str, info: ValidationInfo) -> str:
        name = value or f"deltawatch-watcher-{info.data.get('cluster', 'default')}"
        if info.data.get("leader_election") and not _DNS_SUBDOMAIN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid Lease name (lower-case DNS subdomain)")
        return name

    @field_validator("lease_renew_deadline_s", "lease_retry_period_s")
    @classmethod
    def _shorter_than_the_previous_timing(cls, value: float, info: ValidationInfo) -> float:
        """Retry period < renew deadline < lease duration, as client-go's elector requires."""
        longer = {
            "lease_renew_deadline_s": ("lease_duration_s", "DELTAWATCH_LEASE_DURATION_S"),
            "lease_retry_period_s": ("lease_renew_deadline_s", "DELTAWATCH_LEASE_RENEW_DEADLINE_S"),
        }
        field, variable = longer[str(info.field_name)]
        bound = info.data.get(field)
        if bound is not None and value >= bound:
            raise ValueError(f"must be less than {variable} ({bound})")
        return value


class DifferSettings(CommonSettings):
    http_port: int = Field(9102, validation_alias=_env("DELTAWATCH_HTTP_PORT"), ge=0, le=65535)
    transactional_id: str | None = Field(None, validation_alias=_env("DELTAWATCH_TRANSACTIONAL_ID"))
    batch_max: int = Field(500, validation_alias=_env("DELTAWATCH_BATCH_MAX"), ge=1, le=100000)
    group_id: str = Field(
        "deltawatch-differ", validation_alias=_env("DELTAWATCH_DIFFER_GROUP_ID"), min_length=1
    )
    differ_dlq_topic: str = Field(
        "deltawatch.differ-dlq", validation_alias=_env("DELTAWATCH_DIFFER_DLQ_TOPIC")
    )
    snapshots_changelog_topic: str | None = Field(
        None, validation_alias=_env("DELTAWATCH_DIFFER_CHANGELOG_TOPIC")
    )
    state_dir: Path | None = Field(None, validation_alias=_env("DELTAWATCH_DIFFER_STATE_DIR"))
    """Unset: snapshots entirely in memory. Set: objects and a changelog copy on local disk
    (services.differ.local_state): memory bounded by keys, restarts without a restore."""
    state_cleanup_delay_s: float = Field(
        600.0, validation_alias=_env("DELTAWATCH_DIFFER_STATE_CLEANUP_DELAY_S"), ge=0
    )
    """How long the local state of a revoked partition is kept for its return
    (services.differ.unowned_state; Kafka Streams' state.cleanup.delay.ms)."""

    @field_validator("differ_dlq_topic", "snapshots_changelog_topic")
    @classmethod
    def _valid_differ_topic(cls, value: str | None) -> str | None:
        return None if value is None else CommonSettings._valid_topic(value)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _empty_state_dir_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class NotifierSettings(CommonSettings):
    http_port: int = Field(9103, validation_alias=_env("DELTAWATCH_HTTP_PORT"), ge=0, le=65535)
    callback_timeout_s: float = Field(
        10.0, validation_alias=_env("DELTAWATCH_CALLBACK_TIMEOUT_S"), gt=0
    )
    delivery_max_attempts: int = Field(
        8, validation_alias=_env("DELTAWATCH_DELIVERY_MAX_ATTEMPTS"), ge=1
    )
    delivery_max_age_s: float = Field(
        86400.0, validation_alias=_env("DELTAWATCH_DELIVERY_MAX_AGE_S"), gt=0
    )
    callback_allow_networks: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode
    ] = Field(default_factory=list, validation_alias=_env("DELTAWATCH_CALLBACK_ALLOW_NETWORKS"))
    callback_deny_networks: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode
    ] = Field(default_factory=list, validation_alias=_env("DELTAWATCH_CALLBACK_DENY_NETWORKS"))
    cps_min_notify_interval: float = Field(
        0.0, validation_alias=_env("DELTAWATCH_CPS_MIN_NOTIFY_INTERVAL"), ge=0
    )
    cps_event_format: Literal["delta", "cps"] = Field(
        "delta", validation_alias=_env("DELTAWATCH_CPS_EVENT_FORMAT")
    )
    cps_schema_set: str = Field(
        "k8s-instance-status", validation_alias=_env("DELTAWATCH_CPS_SCHEMA_SET"), min_length=1
    )
    api_timeout_s: float = Field(10.0, validation_alias=_env("DELTAWATCH_API_TIMEOUT_S"), gt=0)
    transactional_id: str | None = Field(None, validation_alias=_env("DELTAWATCH_TRANSACTIONAL_ID"))
    group_id: str | None = Field(
        None, validation_alias=_env("DELTAWATCH_NOTIFIER_GROUP_ID"), min_length=1
    )
    secret_key: SecretStr | None = Field(None, validation_alias=_env("DELTAWATCH_SECRET_KEY"))
    delivery_concurrency: int = Field(
        500, validation_alias=_env("DELTAWATCH_DELIVERY_CONCURRENCY"), ge=1, le=100000
    )
    # Who may call the REST facade: "none" (anyone who reaches the port) or "kubernetes"
    # (a bearer token checked with TokenReview, each verb with SubjectAccessReview).
    api_auth: Literal["none", "kubernetes"] = Field(
        "none", validation_alias=_env("DELTAWATCH_API_AUTH")
    )
    api_auth_cache_ttl_s: float = Field(
        10.0, validation_alias=_env("DELTAWATCH_API_AUTH_CACHE_TTL_S"), ge=0, le=3600
    )
    kubeconfig: str | None = Field(None, validation_alias=_env("KUBECONFIG"))

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        from cryptography.fernet import Fernet

        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key.encode())
            except (ValueError, TypeError):
                raise ValueError(
                    f"key {position} of {len(keys)} is not a Fernet key "
                    "(url-safe base64 of 32 bytes); several keys are comma-separated, newest first"
                ) from None
        return value

    @field_validator("callback_allow_networks", "callback_deny_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            nets = []
            for item in (v.strip() for v in value.split(",")):
                if not item:
                    continue
                try:
                    nets.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not a network in CIDR form") from None
            return nets
        return value


S = TypeVar("S", bound=CommonSettings)


def _variable_name(cls: type[CommonSettings], loc: tuple[int | str, ...]) -> str:
    field_name = str(loc[0]) if loc else "?"
    field = cls.model_fields.get(field_name)
    alias = field.validation_alias if field else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    return field_name


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment; raise :class:`SettingsError` with one line on error."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        variable = _variable_name(cls, tuple(first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        raw = first.get("input")
        secret = any(
            "SecretStr" in str(f.annotation)
            and variable in (name, *getattr(f.validation_alias, "choices", ()))
            for name, f in cls.model_fields.items()
        )
        shown = f" (got {raw!r})" if isinstance(raw, str | int | float) and not secret else ""
        raise SettingsError(f"{variable}: {message}{shown}") from None
