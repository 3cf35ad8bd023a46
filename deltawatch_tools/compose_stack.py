"""``deltawatch compose up|down|test|images``: the docker compose stack on this machine.

Users run ``docker compose -f compose/docker-compose.yml ...`` themselves; this module is for a
machine that starts from nothing, as CI does. It prepares the machine (Docker engine, dockerd,
Compose v2: ``scripts/compose-machine.sh``), makes every image the compose file names available,
building labelled stand-ins when no registry is reachable (``scripts/compose-images.sh``), hands
pip the machine's extra CA certificates as a build secret (a TLS-inspecting proxy re-signs
PyPI), and then drives ``docker compose`` with a project name and host ports of its own, so a
test stack never collides with a user's. The root-level steps are shell scripts because they
are apt/dockerd/go commands; everything a test needs to drive a stack is :class:`ComposeStack`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from deltawatch_tools.local_state import cache_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "compose" / "docker-compose.yml"
SCRIPTS = REPO_ROOT / "scripts"
EXTRA_CA_SOURCES = Path("/usr/local/share/ca-certificates")
STANDIN_LABEL = "org.deltawatch.stand-in"

# Every image the compose file names and does not build itself.
UPSTREAM_IMAGES = (
    "apache/kafka:4.1.1",
    "registry.k8s.io/etcd:3.5.16-0",
    "registry.k8s.io/kube-apiserver:v1.32.13",
    "python:3.11-slim",
    "debian:bookworm-slim",
)

# Host-port variables of compose/docker-compose.yml, with the defaults it uses.
HOST_PORTS = {
    "kafka": ("DELTAWATCH_KAFKA_HOST_PORT", 29092),
    "watcher": ("DELTAWATCH_WATCHER_HOST_PORT", 9101),
    "differ": ("DELTAWATCH_DIFFER_HOST_PORT", 9102),
    "notifier": ("DELTAWATCH_NOTIFIER_HOST_PORT", 9103),
    "callback-sink": ("DELTAWATCH_SINK_HOST_PORT", 8080),
    "kube-apiserver": ("DELTAWATCH_KUBE_HOST_PORT", 6443),
    "kube-apiserver-west": ("DELTAWATCH_WEST_KUBE_HOST_PORT", 6444),
    "watcher-west": ("DELTAWATCH_WEST_WATCHER_HOST_PORT", 9104),
}
# Those of them that only run with the `kube` profile (the in-stack clusters and west's watcher).
KUBE_PROFILE_HOST_PORTS = frozenset({"kube-apiserver", "kube-apiserver-west", "watcher-west"})


def host_port_services(kube: bool) -> list[str]:
    """The services of :data:`HOST_PORTS` that a stack with (or without) the kube profile runs."""
    return [service for service in HOST_PORTS if kube or service not in KUBE_PROFILE_HOST_PORTS]


class ComposeError(RuntimeError):
    """A setup step or a ``docker compose`` command failed; the message says which."""


def _say(message: str) -> None:
    print(f"[deltawatch compose] {message}", file=sys.stderr, flush=True)


def _run_script(
    name: str, env: dict[str, str] | None = None, log_file: Path | None = None, niceness: int = 0
) -> None:
    script = SCRIPTS / name
    command = ["bash", str(script)]
    if niceness:
        command = ["nice", "-n", str(niceness), *command]
    full_env = {**os.environ, **(env or {})}
    if log_file is None:
        result = subprocess.run(command, env=full_env)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as log:
            result = subprocess.run(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        where = ""
        if log_file is not None:
            tail = "\n".join(log_file.read_text().splitlines()[-30:])
            where = f"; last lines of {log_file}:\n{tail}"
        raise ComposeError(
            f"{script.relative_to(REPO_ROOT)} failed (exit {result.returncode}){where}"
        )


def prepare_machine(log_file: Path | None = None, niceness: int = 0) -> None:
    """Docker engine installed and running, Compose v2 installed (idempotent, cached)."""
    _run_script("compose-machine.sh", log_file=log_file, niceness=niceness)


def prepare_images(kube: bool = True, log_file: Path | None = None, niceness: int = 0) -> None:
    """Every upstream image present in dockerd: kept, pulled, or built as a stand-in."""
    _run_script(
        "compose-images.sh",
        {"DELTAWATCH_PYTHON": sys.executable, "DELTAWATCH_COMPOSE_KUBE": "1" if kube else "0"},
        log_file=log_file,
        niceness=niceness,
    )


def prepare(kube: bool = True, log_file: Path | None = None, niceness: int = 0) -> None:
    """Machine, then images: everything ``docker compose up --build`` needs beforehand.

    The test tier starts this in the background at the start of the session, niced, so that
    on a fresh machine the minutes it takes overlap with the other tiers' tests.
    """
    prepare_machine(log_file, niceness)
    prepare_images(kube, log_file, niceness)


def extra_ca_file() -> Path | None:
    """The PEM bundle given to image builds as the ``extra_ca`` secret, if this machine needs one.

    ``DELTAWATCH_EXTRA_CA_FILE`` wins; otherwise the locally added CAs
    (``/usr/local/share/ca-certificates/*.crt``, where a TLS-inspecting proxy's CA is installed)
    are concatenated into the cache. ``None`` when there are none: the build then uses the
    compose file's empty default, as a normal user's does.
    """
    configured = os.environ.get("DELTAWATCH_EXTRA_CA_FILE")
    if configured:
        return Path(configured)
    certificates = sorted(EXTRA_CA_SOURCES.glob("*.crt")) if EXTRA_CA_SOURCES.is_dir() else []
    if not certificates:
        return None
    bundle = cache_dir() / "compose" / "extra-ca.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(path.read_text().rstrip("\n") + "\n" for path in certificates)
    if not bundle.exists() or bundle.read_text() != text:
        bundle.write_text(text)
    return bundle


def standin_images() -> dict[str, str]:
    """Upstream image name -> how its local stand-in was built, for those that are stand-ins."""
    found: dict[str, str] = {}
    for image in UPSTREAM_IMAGES:
        result = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            continue
        labels = json.loads(result.stdout or "null") or {}
        if STANDIN_LABEL in labels:
            found[image] = labels[STANDIN_LABEL]
    return found


@dataclass
class ComposeStack:
    """One compose project of ``compose/docker-compose.yml``: its name, profiles, host ports."""

    project: str = "deltawatch"
    kube: bool = True
    # Host port of each published service; those of the kube profile are only needed with it.
    host_ports: dict[str, int] = field(
        default_factory=lambda: {service: port for service, (_, port) in HOST_PORTS.items()}
    )
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        for service in host_port_services(self.kube):
            env[HOST_PORTS[service][0]] = str(self.host_ports[service])
        bundle = extra_ca_file()
        if bundle is not None:
            env["DELTAWATCH_EXTRA_CA_FILE"] = str(bundle)
        env.setdefault("COMPOSE_BAKE", "false")  # no buildx here: build through dockerd's BuildKit
        return env

    def command(self, *args: str) -> list[str]:
        profiles = ["--profile", "kube"] if self.kube else []
        return ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.project, *profiles, *args]

    def run(
        self, *args: str, check: bool = True, capture: bool = False, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args),
            env=self.env(),
            text=True,
            capture_output=capture,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            detail = f": {result.stderr.strip()[-2000:]}" if capture else ""
            command = " ".join(args)
            raise ComposeError(f"docker compose {command} exited {result.returncode}{detail}")
        return result

    def up(self, wait_timeout_s: int = 300) -> None:
        self.run("up", "--build", "--detach", "--wait", "--wait-timeout", str(wait_timeout_s))

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)

    def container_id(self, service: str) -> str:
        result = self.run("ps", "--all", "--quiet", service, capture=True)
        return result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""

    def logs(self, *services: str, tail: int = 200) -> str:
        result = self.run("logs", "--no-color", "--tail", str(tail), *services, capture=True)
        return result.stdout + result.stderr

    def url(self, service: str, path: str = "") -> str:
        if service not in host_port_services(self.kube):
            raise ComposeError(f"{service} publishes no host port in this stack (kube={self.kube})")
        return f"http://127.0.0.1:{self.host_ports[service]}{path}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.host_ports['kafka']}"


def bring_up(stack: ComposeStack, prepared: bool = False) -> None:
    """Machine and images (unless ``prepared``), then ``docker compose up --build --wait``."""
    if not prepared:
        prepare(kube=stack.kube)
    _say(f"docker compose up --build --wait (project {stack.project})")
    stack.up()
    # Each rebuild leaves the previous build of an image untagged: drop those (only images
    # Compose built; nothing else on the machine), or every run would grow the disk.
    subprocess.run(
        ["docker", "image", "prune", "--force", "--filter", "label=com.docker.compose.service"],
        capture_output=True,
    )


# -- CLI ------------------------------------------------------------------------------------------

compose_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="The docker compose stack on this machine."
)
KubeOption = Annotated[
    bool, typer.Option("--kube/--no-kube", help="Run etcd + kube-apiserver in the stack.")
]
ProjectOption = Annotated[str, typer.Option(help="Compose project name.")]


def _fail(exc: Exception) -> typer.Exit:
    _say(f"error: {exc}")
    return typer.Exit(1)


@compose_app.command()
def up(kube: KubeOption = True, project: ProjectOption = "deltawatch") -> None:
    """Prepare the machine and images, build the workers, start the stack and wait for health."""
    try:
        bring_up(ComposeStack(project=project, kube=kube))
    except (ComposeError, subprocess.SubprocessError) as exc:
        raise _fail(exc) from None
    for image, how in standin_images().items():
        _say(f"stand-in image {image}: {how}")


@compose_app.command()
def down(project: ProjectOption = "deltawatch") -> None:
    """Stop the stack and remove its containers, network and volumes."""
    ComposeStack(project=project, kube=True).down()


@compose_app.command()
def images(kube: KubeOption = True) -> None:
    """Make every image the compose file uses available; list those that are local stand-ins."""
    try:
        prepare(kube=kube)
    except ComposeError as exc:
        raise _fail(exc) from None
    for image, how in standin_images().items():
        print(f"{image}\tstand-in: {how}")


@compose_app.command()
def test() -> None:
    """Run the compose test tier (``pytest -m compose tests/compose``)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "compose", "tests/compose", "-q"], cwd=REPO_ROOT
    )
    raise typer.Exit(result.returncode)
