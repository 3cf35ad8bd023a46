"""Fixtures of the compose tier: one real ``docker compose`` stack for the whole session.

The stack is the user's ``compose/docker-compose.yml`` with the ``kube`` profile, brought up by
the same code as ``deltawatch compose up`` (machine setup, images, ``up --build --wait``) under
a project name and host ports of its own, and removed with ``down -v`` at the end. This tier
must not pass quietly on a machine that cannot run it: a missing engine or missing root is an
error, unless a human sets ``DELTAWATCH_SKIP_COMPOSE=1``.

On a fresh machine the preparation (apt, dockerd, building Compose, the stand-in images) takes
minutes, so it starts in the background, niced, as soon as collection selects a stack test, and
the stack tests run last: in a whole-suite run the other tiers' tests overlap with it.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from deltawatch_tools.compose_stack import (
    ComposeStack,
    bring_up,
    host_port_services,
    prepare,
    standin_images,
)
from deltawatch_tools.local_state import cache_dir, free_port
from tests.compose.waiting import STACK_SETUP_TIMEOUT_S, await_condition

KUBE_TOKEN = "deltawatch-compose-local-token"  # compose/kube/tokens.csv
PREPARE_LOG = cache_dir() / "compose" / "prepare.log"


def _skipped() -> bool:
    return os.environ.get("DELTAWATCH_SKIP_COMPOSE") == "1"


def _uses_stack(item: pytest.Item) -> bool:
    return "compose_stack" in getattr(item, "fixturenames", ())


class _Preparation:
    """``prepare()`` on a daemon thread; :meth:`result` waits and re-raises its error."""

    def __init__(self) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="compose-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            prepare(kube=True, log_file=PREPARE_LOG, niceness=10)
        except BaseException as exc:  # handed to the fixture, which fails the tests with it
            self._error = exc

    def result(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"compose preparation still running after {timeout_s:.0f} s")
        if self._error is not None:
            raise self._error


_preparation: _Preparation | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_uses_stack)  # stable: everything else keeps its order, stack tests last


def pytest_collection_finish(session: pytest.Session) -> None:
    global _preparation
    if session.config.option.collectonly or _preparation is not None or _skipped():
        return
    if any(map(_uses_stack, session.items)):
        _preparation = _Preparation()


@pytest.fixture(scope="session")
def compose_stack() -> Iterator[ComposeStack]:
    if _skipped():
        pytest.skip("DELTAWATCH_SKIP_COMPOSE=1: compose tier skipped by request")
    (_preparation or _Preparation()).result(STACK_SETUP_TIMEOUT_S)
    stack = ComposeStack(
        project=f"dwtest-{uuid.uuid4().hex[:8]}",
        kube=True,
        host_ports={service: free_port() for service in host_port_services(kube=True)},
    )
    try:
        bring_up(stack, prepared=True)
    except BaseException:
        print(stack.logs(tail=80))
        stack.down()
        raise
    print(f"compose stack {stack.project} up; stand-in images: {standin_images()}")
    try:
        yield stack
    finally:
        stack.down()


def _host_kubeconfig(stack: ComposeStack, apiserver: str, workdir: Path) -> Path:
    """A kubeconfig for the host: ``apiserver`` on its published port, with its own CA."""
    ca_file = workdir / "apiserver.crt"
    base = stack.url(apiserver).replace("http://127.0.0.1", "https://localhost")

    def api_ready() -> bool:
        stack.run("cp", f"{apiserver}:/var/lib/kube/pki/apiserver.crt", str(ca_file), capture=True)
        context = ssl.create_default_context(cafile=str(ca_file))
        request = urllib.request.Request(
            f"{base}/readyz", headers={"Authorization": f"Bearer {KUBE_TOKEN}"}
        )
        with urllib.request.urlopen(request, context=context, timeout=5) as reply:
            return bool(reply.status == 200)

    await_condition(f"the stack's {apiserver} /readyz", api_ready, 120, interval_s=1)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": apiserver,
                "cluster": {
                    "server": base,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": KUBE_TOKEN}}],
        "contexts": [{"name": apiserver, "context": {"cluster": apiserver, "user": "admin"}}],
        "current-context": apiserver,
    }
    path = workdir / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def _api_client(kubeconfig: Path) -> Iterator[ApiClient]:
    api: ApiClient = new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def stack_kubeconfig(compose_stack: ComposeStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first cluster's API server (``kube-apiserver``, cluster ``compose``) from the host."""
    return _host_kubeconfig(
        compose_stack, "kube-apiserver", tmp_path_factory.mktemp("compose-kube")
    )


@pytest.fixture(scope="session")
def stack_west_kubeconfig(
    compose_stack: ComposeStack, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The second cluster's API server (``kube-apiserver-west``, cluster ``west``) from the host."""
    workdir = tmp_path_factory.mktemp("compose-kube-west")
    return _host_kubeconfig(compose_stack, "kube-apiserver-west", workdir)


@pytest.fixture
def stack_kube_api(stack_kubeconfig: Path) -> Iterator[ApiClient]:
    yield from _api_client(stack_kubeconfig)


@pytest.fixture
def stack_west_kube_api(stack_west_kubeconfig: Path) -> Iterator[ApiClient]:
    yield from _api_client(stack_west_kubeconfig)
