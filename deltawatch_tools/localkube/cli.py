"""``deltawatch kube start|stop|status|restart|compact``: the local API server from a shell.

A developer starts the server once and keeps it for many test runs (the pytest fixture reuses
it), points kubectl or the demo at the printed kubeconfig, and provokes what a watcher must
survive by hand. stdout carries only what a script wants (the kubeconfig path, or the status),
progress and the multi-minute first build go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from deltawatch_tools.localkube.build import KubeBuildError
from deltawatch_tools.localkube.server import (
    KubeOptions,
    KubeServerError,
    LocalKubeServer,
    default_state_dir,
)

kube_app = typer.Typer(
    help="A real local Kubernetes API server (etcd + kube-apiserver built from Go modules).",
    no_args_is_help=True,
)

# Exit code of `status` when no server runs, as in LSB init scripts ("program is not running").
EXIT_NOT_RUNNING = 3

_DEFAULTS = KubeOptions()

ServerName = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="A named server of its own (state dir run/kube-NAME), e.g. one per cluster to "
        "watch; without it, the default server.",
    ),
]


def _server(name: str | None) -> LocalKubeServer:
    try:
        return LocalKubeServer(default_state_dir(name))
    except ValueError as exc:
        raise _fail(exc) from exc


def _fail(exc: Exception) -> typer.Exit:
    print(f"deltawatch kube: {exc}", file=sys.stderr)
    return typer.Exit(1)


@kube_app.command()
def start(
    watch_cache: Annotated[
        bool,
        typer.Option(
            "--watch-cache/--no-watch-cache",
            help="kube-apiserver's watch cache; off, a compacted resourceVersion gives 410.",
        ),
    ] = _DEFAULTS.watch_cache,
    compaction_interval: Annotated[
        str,
        typer.Option(help="--etcd-compaction-interval, a Go duration; 0 disables."),
    ] = _DEFAULTS.etcd_compaction_interval,
    min_request_timeout: Annotated[
        int,
        typer.Option(help="--min-request-timeout in seconds: watches end after 1-2x this."),
    ] = _DEFAULTS.min_request_timeout,
    apiserver_arg: Annotated[
        list[str] | None,
        typer.Option(help="Extra kube-apiserver flag, verbatim; repeatable."),
    ] = None,
    name: ServerName = None,
) -> None:
    """Build if needed, start (or reuse) the server, print its kubeconfig path.

    A running server is reused; if it runs with other options than these, its kube-apiserver
    restarts with these (etcd and its data stay).
    """
    try:
        options = KubeOptions(
            watch_cache=watch_cache,
            etcd_compaction_interval=compaction_interval,
            min_request_timeout=min_request_timeout,
            extra_apiserver_args=tuple(apiserver_arg or ()),
        )
        server = _server(name)
        server.ensure_running(options)
    except (KubeServerError, KubeBuildError, ValueError) as exc:
        raise _fail(exc) from exc
    print(server.kubeconfig)


@kube_app.command()
def stop(name: ServerName = None) -> None:
    """Stop etcd and kube-apiserver (by the PIDs in the state dir)."""
    try:
        stopped = _server(name).stop()
    except KubeServerError as exc:
        raise _fail(exc) from exc
    print("stopped" if stopped else "not running", file=sys.stderr)


@kube_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    name: ServerName = None,
) -> None:
    """Report whether the server runs, and where its kubeconfig is. Exit 3 if it does not."""
    report = _server(name).status()
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.running:
        assert report.options is not None
        print("running" + ("" if report.ready else " (not ready)"))
        print(f"kubeconfig: {report.kubeconfig}")
        print(f"server: {report.server_url}")
        print(f"etcd: {report.etcd_url}")
        print(f"pids: etcd={report.etcd_pid} kube-apiserver={report.apiserver_pid}")
        print(f"options: {report.options.describe()}")
        print(f"state dir: {report.state_dir}")
    else:
        print("not running")
        print(f"state dir: {report.state_dir}")
    if not report.running:
        raise typer.Exit(EXIT_NOT_RUNNING)


@kube_app.command()
def restart(name: ServerName = None) -> None:
    """Restart kube-apiserver only: every watch drops, the watch cache starts afresh."""
    try:
        _server(name).restart_apiserver()
    except KubeServerError as exc:  # KubeNotRunningError included
        raise _fail(exc) from exc


@kube_app.command()
def compact(name: ServerName = None) -> None:
    """Compact etcd up to its current revision now (older continue tokens answer 410)."""
    try:
        revision = _server(name).compact_etcd()
    except KubeServerError as exc:
        raise _fail(exc) from exc
    print(revision)
