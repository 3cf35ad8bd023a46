"""A real etcd + kube-apiserver on loopback ports, findable by any process through a state dir.

Why it is shaped like this:

* Tests, the demo and a developer's shell all want the *same* server: ``deltawatch kube
  start`` in one terminal, pytest in another, ``deltawatch kube restart`` from a third. So
  everything a process needs to find, reuse, restart or stop the server (PIDs, ports,
  options, kubeconfig, logs) lives in one state directory, and every mutation happens under
  an ``fcntl`` lock on that directory so two processes starting at once start one server.
* Processes are spawned in their own session with ``posix_spawn`` and their output goes to
  log files, so they outlive the process that started them and no ``Popen`` object is left
  behind to complain. They are stopped strictly by PID (SIGTERM, then SIGKILL), and a PID
  only counts as ours if its kernel start time matches the one recorded at spawn time: a
  recycled PID is never signalled.
* No kubelet or controller runs. The flags below are what such an API server needs:
  AlwaysAllow authorization (``KubeOptions.authorization_mode`` selects RBAC instead), a
  static bearer token in ``system:masters``, a service-account
  signing key (made once), no ServiceAccount admission, no endpoint reconciler.
* Tests must provoke what a watcher has to survive, so the server exposes it: turning the
  watch cache off, the compaction interval, ``--min-request-timeout`` (the server closes
  watches itself), restarting kube-apiserver alone (every watch drops; the new watch cache
  answers 410 to old resourceVersions) and compacting etcd on demand.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from deltawatch_tools.local_state import cache_dir, file_lock
from deltawatch_tools.localkube.build import KubeBinaries, ensure_binaries
from deltawatch_tools.localkube.signing_key import rsa_private_key_pem

if TYPE_CHECKING:  # the client takes half a second to import: not for `deltawatch kube status`
    from kubernetes.client import ApiClient

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "deltawatch-admin"

_DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
_ETCD_READY_TIMEOUT_S = 60.0
_APISERVER_READY_TIMEOUT_S = 180.0
_TERM_GRACE_S = 15.0
_KILL_GRACE_S = 5.0
_PORT_ATTEMPTS = 3


class KubeServerError(RuntimeError):
    """The local server could not be started, reached or stopped."""


class KubeNotRunningError(KubeServerError):
    """An operation needs a running server and the state dir describes none."""


_SERVER_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")


def default_state_dir(name: str | None = None) -> Path:
    """``run/kube`` for the default server; ``run/kube-<name>`` for a named one, so that servers
    standing in for several clusters (CONTRACT §10) run side by side, each with its own etcd,
    ports and kubeconfig."""
    if name is None:
        return cache_dir() / "run" / "kube"
    if not _SERVER_NAME.fullmatch(name):
        raise ValueError(f"server name {name!r}: lowercase letters, digits and '-', at most 40")
    return cache_dir() / "run" / f"kube-{name}"


@dataclass(frozen=True)
class KubeOptions:
    """kube-apiserver settings a test may need to provoke watch failures.

    ``etcd_compaction_interval`` is a Go duration ("5m0s", "30s"; "0" disables the
    apiserver's own compaction). ``min_request_timeout`` is in seconds: the server ends each
    watch after a random time between it and twice it. ``extra_apiserver_args`` is passed
    through verbatim (e.g. ``("--feature-gates=WatchList=true",)``). ``authorization_mode``
    is kube-apiserver's ``--authorization-mode``: ``AlwaysAllow`` (every test but the chart's)
    or ``Node,RBAC`` to prove least-privilege roles (the admin token stays in
    ``system:masters``, which RBAC lets do anything).
    """

    watch_cache: bool = True
    etcd_compaction_interval: str = "5m0s"
    min_request_timeout: int = 1800
    extra_apiserver_args: tuple[str, ...] = ()
    authorization_mode: str = "AlwaysAllow"

    def __post_init__(self) -> None:
        if not _DURATION.match(self.etcd_compaction_interval):
            raise ValueError(
                f"etcd_compaction_interval must be a Go duration such as 30s or 5m0s, "
                f"not {self.etcd_compaction_interval!r}"
            )
        if self.min_request_timeout < 1:
            raise ValueError("min_request_timeout must be at least 1 second")
        if not re.fullmatch(r"[A-Za-z]+(,[A-Za-z]+)*", self.authorization_mode):
            raise ValueError(f"authorization_mode {self.authorization_mode!r}: e.g. Node,RBAC")

    def apiserver_flags(self) -> list[str]:
        return [
            f"--watch-cache={'true' if self.watch_cache else 'false'}",
            f"--etcd-compaction-interval={self.etcd_compaction_interval}",
            f"--min-request-timeout={self.min_request_timeout}",
            f"--authorization-mode={self.authorization_mode}",
            *self.extra_apiserver_args,
        ]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["extra_apiserver_args"] = list(self.extra_apiserver_args)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KubeOptions:
        return cls(
            watch_cache=bool(data["watch_cache"]),
            etcd_compaction_interval=str(data["etcd_compaction_interval"]),
            min_request_timeout=int(data["min_request_timeout"]),
            extra_apiserver_args=tuple(str(a) for a in data.get("extra_apiserver_args", ())),
            authorization_mode=str(data.get("authorization_mode", "AlwaysAllow")),
        )

    def describe(self) -> str:
        text = (
            f"watch-cache={'on' if self.watch_cache else 'off'} "
            f"etcd-compaction-interval={self.etcd_compaction_interval} "
            f"min-request-timeout={self.min_request_timeout}s"
        )
        if self.authorization_mode != "AlwaysAllow":
            text += f" authorization-mode={self.authorization_mode}"
        if self.extra_apiserver_args:
            text += " " + " ".join(self.extra_apiserver_args)
        return text


@dataclass(frozen=True)
class ProcessRecord:
    """A PID plus its kernel start time, so that a recycled PID is never mistaken for ours."""

    pid: int
    start_ticks: int | None

    def alive(self) -> bool:
        _reap(self.pid)
        ticks = _start_ticks(self.pid)
        if ticks is not None or Path("/proc/self/stat").exists():
            return ticks is not None and ticks == self.start_ticks
        try:  # no /proc (not Linux): the best we can do is "some process has this PID"
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass(frozen=True)
class _State:
    etcd: ProcessRecord
    etcd_client_port: int
    etcd_peer_port: int
    apiserver: ProcessRecord | None
    apiserver_port: int
    options: KubeOptions
    binaries: KubeBinaries
    started_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "etcd": asdict(self.etcd),
            "etcd_client_port": self.etcd_client_port,
            "etcd_peer_port": self.etcd_peer_port,
            "apiserver": asdict(self.apiserver) if self.apiserver else None,
            "apiserver_port": self.apiserver_port,
            "options": self.options.to_json(),
            "binaries": {
                "etcd": str(self.binaries.etcd),
                "kube_apiserver": str(self.binaries.kube_apiserver),
            },
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        api = data.get("apiserver")
        return cls(
            etcd=ProcessRecord(**data["etcd"]),
            etcd_client_port=int(data["etcd_client_port"]),
            etcd_peer_port=int(data["etcd_peer_port"]),
            apiserver=ProcessRecord(**api) if api else None,
            apiserver_port=int(data["apiserver_port"]),
            options=KubeOptions.from_json(data["options"]),
            binaries=KubeBinaries(
                etcd=Path(data["binaries"]["etcd"]),
                kube_apiserver=Path(data["binaries"]["kube_apiserver"]),
            ),
            started_at=float(data["started_at"]),
        )


@dataclass(frozen=True)
class KubeStatus:
    """What ``deltawatch kube status`` reports. URLs and PIDs are None when not running."""

    running: bool
    ready: bool
    state_dir: Path
    kubeconfig: Path | None
    server_url: str | None
    etcd_url: str | None
    etcd_pid: int | None
    apiserver_pid: int | None
    options: KubeOptions | None

    def to_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "ready": self.ready,
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "server_url": self.server_url,
            "etcd_url": self.etcd_url,
            "etcd_pid": self.etcd_pid,
            "apiserver_pid": self.apiserver_pid,
            "options": self.options.to_json() if self.options else None,
        }


class LocalKubeServer:
    """Handle on the server described by a state directory; cheap to create, holds no process.

    Any number of handles, in any number of processes, may point at the same state dir;
    :meth:`ensure_running`, :meth:`restart_apiserver` and :meth:`stop` serialise on its lock.

    Layout of the state dir (default ``${DELTAWATCH_CACHE_DIR:-~/.cache/deltawatch}/run/kube``)::

        lock              fcntl lock taken by every start/restart/stop
        state.json        PIDs (+ start times), ports, options, binary paths
        kubeconfig        bearer-token kubeconfig for the running server (0600)
        token, tokens.csv the admin bearer token and kube-apiserver's --token-auth-file
        sa.key            RSA key for service-account tokens, made once
        pki/              kube-apiserver --cert-dir (self-signed serving cert, kept)
        etcd-data/        etcd's data dir, wiped at every start
        etcd.log, kube-apiserver.log
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        progress: TextIO | None = sys.stderr,
        binaries: KubeBinaries | None = None,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self._progress = progress
        self._binaries = binaries

    # -- paths --------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def etcd_log(self) -> Path:
        return self.state_dir / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        return self.state_dir / "kube-apiserver.log"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def _cert_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def _etcd_data(self) -> Path:
        return self.state_dir / "etcd-data"

    # -- public API ---------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self._require_state().apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self._require_state().etcd_client_port}"

    @property
    def options(self) -> KubeOptions:
        return self._require_state().options

    def status(self) -> KubeStatus:
        state = self._read_state()
        running = state is not None and self._processes_alive(state)
        if state is None or not running:
            return KubeStatus(
                running=False,
                ready=False,
                state_dir=self.state_dir,
                kubeconfig=None,
                server_url=None,
                etcd_url=None,
                etcd_pid=None,
                apiserver_pid=None,
                options=None,
            )
        assert state.apiserver is not None
        return KubeStatus(
            running=True,
            ready=self._apiserver_ready(state.apiserver_port),
            state_dir=self.state_dir,
            kubeconfig=self.kubeconfig,
            server_url=f"https://127.0.0.1:{state.apiserver_port}",
            etcd_url=f"http://127.0.0.1:{state.etcd_client_port}",
            etcd_pid=state.etcd.pid,
            apiserver_pid=state.apiserver.pid,
            options=state.options,
        )

    def is_running(self) -> bool:
        return self.status().running

    def ensure_running(self, options: KubeOptions | None = None) -> bool:
        """Reuse the running server or start one; return True when this call started it.

        With ``options`` given and different from the running server's, kube-apiserver is
        restarted with them (etcd and its data stay). With ``options=None`` any running
        server is reused as it is, and a new one gets the defaults.
        """
        binaries = self._binaries or ensure_binaries(self._progress)
        with self._locked():
            state = self._read_state()
            if state is not None and self._healthy(state):
                if options is not None and options != state.options:
                    self._say(f"restarting kube-apiserver with {options.describe()}")
                    self._restart_apiserver_locked(state, options)
                else:
                    self._say(f"reusing the running server at {self.state_dir}")
                return False
            if state is not None:
                self._say("cleaning up a server that is no longer healthy")
                self._stop_locked(state)
            self._start_locked(binaries, options or KubeOptions())
            return True

    def restart_apiserver(self, options: KubeOptions | None = None) -> None:
        """Restart kube-apiserver alone, on the same port; wait until it is ready again.

        Every open watch drops and the watch cache starts afresh, so a WATCH from a
        resourceVersion older than the restart then answers 410 Gone.
        """
        with self._locked():
            state = self._read_state()
            if state is None or not state.etcd.alive():
                raise KubeNotRunningError(f"no local Kubernetes server in {self.state_dir}")
            self._restart_apiserver_locked(state, options or state.options)

    def stop(self) -> bool:
        """Stop both processes by PID; return False if nothing was running."""
        with self._locked():
            state = self._read_state()
            if state is None:
                return False
            was_running = self._processes_alive(state)
            self._stop_locked(state)
            return was_running

    def etcd_revision(self) -> int:
        """Current etcd revision, read through etcd's v3 HTTP gateway."""
        reply = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
        return int(reply["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd up to its current revision now; return that revision.

        Continue tokens and (with the watch cache off) watches from any older
        resourceVersion then answer 410 Gone.
        """
        revision = self.etcd_revision()
        try:
            self._etcd_post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except KubeServerError as exc:
            if "compacted" not in str(exc):  # compacting the same revision twice is fine
                raise
        return revision

    def api_client(self) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` for this server, from its kubeconfig.

        The caller closes it (it owns a connection pool)."""
        from kubernetes import config as kube_config

        self._require_state()
        # The client ships without annotations for this function; its result is an ApiClient.
        new_client: Callable[..., ApiClient] = kube_config.new_client_from_config
        return new_client(config_file=str(self.kubeconfig), persist_config=False)

    # -- start / stop -------------------------------------------------------------------------

    def _start_locked(self, binaries: KubeBinaries, options: KubeOptions) -> None:
        started = time.monotonic()
        self._prepare_files()
        try:
            state = self._spawn_both(binaries, options)
            self._write_kubeconfig(state.apiserver_port)
        except BaseException:
            # Leave nothing half-started behind; the logs stay for diagnosis.
            if (current := self._read_state()) is not None:
                self._stop_locked(current)
            raise
        self._say(
            f"ready in {time.monotonic() - started:.1f}s: {self.server_url} "
            f"(etcd pid {state.etcd.pid}, kube-apiserver pid "
            f"{state.apiserver.pid if state.apiserver else '?'}); {options.describe()}"
        )

    def _spawn_both(self, binaries: KubeBinaries, options: KubeOptions) -> _State:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            client_port, peer_port, api_port = _free_ports(3)
            try:
                state = self._spawn_etcd(binaries, options, client_port, peer_port, api_port)
                return self._spawn_apiserver(state)
            except _PortTakenError as exc:
                self._say(f"{exc}; retrying with other ports ({attempt}/{_PORT_ATTEMPTS})")
                if (current := self._read_state()) is not None:
                    self._stop_locked(current)
        raise KubeServerError(f"could not find free ports in {_PORT_ATTEMPTS} attempts")

    def _prepare_files(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token_file = self.state_dir / "token"
        if not token_file.exists():
            _write_private(token_file, secrets.token_urlsafe(32) + "\n")
        _write_private(
            self.state_dir / "tokens.csv",
            f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n',
        )
        key = self.state_dir / "sa.key"
        if not key.exists():
            _write_private(key, rsa_private_key_pem())
        self._cert_dir.mkdir(exist_ok=True)
        if self._etcd_data.exists():
            shutil.rmtree(self._etcd_data)
        self.kubeconfig.unlink(missing_ok=True)
        for log in (self.etcd_log, self.apiserver_log):
            log.write_text("")

    def _spawn_etcd(
        self,
        binaries: KubeBinaries,
        options: KubeOptions,
        client_port: int,
        peer_port: int,
        api_port: int,
    ) -> _State:
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        argv = [
            str(binaries.etcd),
            "--name=deltawatch",
            f"--data-dir={self._etcd_data}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=deltawatch={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",  # a throwaway test store; fsync only slows the tests down
            "--log-level=warn",
        ]
        etcd = _spawn(argv, self.etcd_log)
        state = _State(
            etcd=etcd,
            etcd_client_port=client_port,
            etcd_peer_port=peer_port,
            apiserver=None,
            apiserver_port=api_port,
            options=options,
            binaries=binaries,
        )
        self._write_state(state)  # written at once so that a crash here leaves it findable
        self._wait_ready(
            "etcd", etcd, self.etcd_log, _ETCD_READY_TIMEOUT_S, lambda: self._etcd_ready(state)
        )
        return state

    def _apiserver_argv(self, state: _State) -> list[str]:
        key = self.state_dir / "sa.key"
        return [
            str(state.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{state.etcd_client_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={state.apiserver_port}",
            f"--cert-dir={self._cert_dir}",
            f"--token-auth-file={self.state_dir / 'tokens.csv'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={key}",
            f"--service-account-signing-key-file={key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            *state.options.apiserver_flags(),
        ]

    def _spawn_apiserver(self, state: _State) -> _State:
        apiserver = _spawn(self._apiserver_argv(state), self.apiserver_log)
        state = replace(state, apiserver=apiserver)
        self._write_state(state)
        self._wait_ready(
            "kube-apiserver",
            apiserver,
            self.apiserver_log,
            _APISERVER_READY_TIMEOUT_S,
            lambda: self._apiserver_ready(state.apiserver_port),
        )
        return state

    def _restart_apiserver_locked(self, state: _State, options: KubeOptions) -> None:
        started = time.monotonic()
        if state.apiserver is not None:
            _terminate(state.apiserver)
        state = replace(state, apiserver=None, options=options)
        self._write_state(state)
        with self.apiserver_log.open("a") as log:
            log.write(f"\n==== deltawatch: restarting kube-apiserver ({options.describe()})\n")
        self._spawn_apiserver(state)
        self._say(f"kube-apiserver restarted in {time.monotonic() - started:.1f}s")

    def _stop_locked(self, state: _State) -> None:
        if state.apiserver is not None:
            _terminate(state.apiserver)
        _terminate(state.etcd)
        self._state_file.unlink(missing_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        if self._etcd_data.exists():
            shutil.rmtree(self._etcd_data, ignore_errors=True)

    # -- readiness ----------------------------------------------------------------------------

    def _wait_ready(
        self,
        name: str,
        process: ProcessRecord,
        log: Path,
        timeout: float,
        ready: Callable[[], bool],
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            if not process.alive():
                text = _tail(log)
                if "address already in use" in text:
                    raise _PortTakenError(f"{name} lost a race for its port")
                raise KubeServerError(f"{name} exited during start-up; {log}:\n{text}")
            if time.monotonic() > deadline:
                raise KubeServerError(
                    f"{name} not ready after {timeout:.0f}s; {log}:\n{_tail(log)}"
                )
            time.sleep(0.2)

    def _etcd_ready(self, state: _State) -> bool:
        url = f"http://127.0.0.1:{state.etcd_client_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(json.load(reply).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self, port: int) -> bool:
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/readyz",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        # Loopback to a process we started; the CA only exists once it has written its cert.
        context = ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as reply:
                return bool(reply.status == 200)
        except (OSError, ValueError):
            return False

    def _healthy(self, state: _State) -> bool:
        if not self._processes_alive(state):
            return False
        # It may be busy (two shared cores): give it a moment before declaring it broken.
        deadline = time.monotonic() + 10
        while not self._apiserver_ready(state.apiserver_port):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return self.kubeconfig.exists()

    @staticmethod
    def _processes_alive(state: _State) -> bool:
        return state.etcd.alive() and state.apiserver is not None and state.apiserver.alive()

    # -- files --------------------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.state_dir / "lock")

    def _read_state(self) -> _State | None:
        try:
            return _State.from_json(json.loads(self._state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise KubeServerError(f"unreadable {self._state_file}: {exc}") from exc

    def _require_state(self) -> _State:
        state = self._read_state()
        if state is None:
            raise KubeNotRunningError(f"no local Kubernetes server in {self.state_dir}")
        return state

    def _write_state(self, state: _State) -> None:
        _write_private(self._state_file, json.dumps(state.to_json(), indent=2) + "\n")

    def _write_kubeconfig(self, port: int) -> None:
        ca = (self._cert_dir / "apiserver.crt").read_bytes()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "deltawatch-local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "certificate-authority-data": base64.b64encode(ca).decode(),
                    },
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "deltawatch-local",
                    "context": {"cluster": "deltawatch-local", "user": ADMIN_USER},
                }
            ],
            "current-context": "deltawatch-local",
        }
        # JSON is valid YAML: kubectl and the Python client both read it.
        _write_private(self.kubeconfig, json.dumps(config, indent=2) + "\n")

    def _etcd_post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.etcd_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                result: dict[str, Any] = json.load(reply)
                return result
        except urllib.error.HTTPError as exc:
            raise KubeServerError(f"etcd {path}: {exc.code} {exc.read().decode()}") from exc
        except OSError as exc:
            raise KubeServerError(f"etcd {path}: {exc}") from exc

    def _say(self, message: str) -> None:
        if self._progress is not None:
            print(f"[deltawatch kube] {message}", file=self._progress, flush=True)


# -- processes ------------------------------------------------------------------------------


class _PortTakenError(KubeServerError):
    pass


def _spawn(argv: list[str], log: Path) -> ProcessRecord:
    """Start ``argv`` in a new session, output appended to ``log``, stdin from /dev/null."""
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=file_actions, setsid=True)
    return ProcessRecord(pid=pid, start_ticks=_start_ticks(pid))


def _start_ticks(pid: int) -> int | None:
    """Start time of a live (non-zombie) process, in clock ticks since boot; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5)
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int, wait_s: float = 0.0) -> None:
    """Collect the exit status if ``pid`` is our own exited child, so it leaves no zombie.

    /proc shows a Go process as a zombie as soon as its main thread exits, while its other
    threads may still be exiting; until they have, ``waitpid`` has nothing to collect, so one
    WNOHANG call can come too early: after stopping a process, poll for ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)


def _terminate(process: ProcessRecord) -> None:
    """SIGTERM, wait, then SIGKILL: always by the recorded PID, only if it is still ours."""
    for sig, grace in ((signal.SIGTERM, _TERM_GRACE_S), (signal.SIGKILL, _KILL_GRACE_S)):
        if not process.alive():
            _reap(process.pid, wait_s=5.0)
            return
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    if process.alive():
        raise KubeServerError(f"process {process.pid} survived SIGKILL")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _write_private(path: Path, text: str) -> None:
    """Write atomically (readers never see half a file), readable by the owner only."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
