"""``compose/docker-compose.yml`` is a valid Compose file and names only things that exist.

Needs no Docker: the file is checked against the Compose Specification schema (vendored as
``compose/compose-spec.json`` from compose-go v2.9.1, the version Compose v2.40.3 validates
with), and every build context, Dockerfile, command, mounted script and worker environment
variable it references is looked up in the project and in ``deltawatch/settings.py``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deltawatch.settings import (
    CommonSettings,
    DifferSettings,
    NotifierSettings,
    WatcherSettings,
)
from deltawatch_tools.compose_stack import (
    HOST_PORTS,
    KUBE_PROFILE_HOST_PORTS,
    UPSTREAM_IMAGES,
    host_port_services,
)

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
WORKER_SETTINGS: dict[str, type[CommonSettings]] = {
    "watcher": WatcherSettings,
    "differ": DifferSettings,
    "notifier": NotifierSettings,
}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")
# The kube profile's two clusters (CONTRACT §10): watcher -> (its API server, its cluster name).
WATCHED = {
    "watcher": ("kube-apiserver", "compose"),
    "watcher-west": ("kube-apiserver-west", "west"),
}
KUBE_PROFILE = {"etcd", "kube-apiserver", "etcd-west", "kube-apiserver-west", "watcher-west"}


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (COMPOSE_DIR / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(compose_text)
    return loaded


def _interpolated(value: str) -> str:
    """A value as Compose sees it with every ``${VAR:-default}`` at its default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def _aliases(settings: type[CommonSettings]) -> set[str]:
    names: set[str] = set()
    for field in settings.model_fields.values():
        alias = field.validation_alias
        names.update(str(choice) for choice in getattr(alias, "choices", ()))
    return names


def _networks(service: dict[str, Any]) -> set[str]:
    return set(service.get("networks") or ["default"])


def _resolve(compose: dict[str, Any], client: str, name: str) -> set[str]:
    """The services that ``name`` may reach from ``client``: service names and network aliases
    on the networks they share (Docker's DNS answers with any of them)."""
    services = compose["services"]
    found = set()
    for other, service in services.items():
        for network in _networks(service) & _networks(services[client]):
            networks = service.get("networks")
            aliases = (
                (networks[network] or {}).get("aliases", []) if isinstance(networks, dict) else []
            )
            if name == other or name in aliases:
                found.add(other)
    return found


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (defaults interpolated) of a service's volumes."""
    return {
        parts[1]: parts[0] for parts in (_interpolated(v).split(":") for v in service["volumes"])
    }


def _dockerfile(service: dict[str, Any]) -> tuple[Path, Path]:
    build = service["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def test_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((COMPOSE_DIR / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict enough to catch a misspelt key (so the check above means something).
    broken = {**compose, "services": {"x": {"image": "x", "restart_policy": "always"}}}
    assert list(validator.iter_errors(broken))


def test_services_are_the_ones_the_contract_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "watcher", "differ", "notifier", "callback-sink"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    profiled = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    assert profiled == {name: ["kube"] for name in KUBE_PROFILE}
    for name in ("etcd", "kube-apiserver", "etcd-west", "kube-apiserver-west"):
        assert services[name]["image"].startswith("registry.k8s.io/")
    # Without the kube profile nothing needs its services: no required dependency on them.
    for name, service in services.items():
        if name in KUBE_PROFILE:
            continue
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency not in KUBE_PROFILE or condition.get("required") is False, name
    upstream = {s["image"] for s in services.values() if "build" not in s}
    assert upstream <= set(UPSTREAM_IMAGES)


def test_build_contexts_dockerfiles_and_copied_paths_exist(compose: dict[str, Any]) -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    allowed_from_root = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    built = {name: s for name, s in compose["services"].items() if "build" in s}
    assert {"watcher", "differ", "notifier", "callback-sink", "sample-subscription"} <= set(built)
    for name, service in built.items():
        context, dockerfile = _dockerfile(service)
        assert context.is_dir(), name
        assert dockerfile.is_file(), f"{name}: {dockerfile}"
        text = dockerfile.read_text()
        assert "# syntax=" not in text  # a frontend image would be pulled from a registry
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M):
            for source in line.split()[:-1]:
                assert (context / source).exists(), f"{name}: COPY {source}"
                if context == ROOT:
                    kept = {source.rstrip("/"), *(p.as_posix() for p in Path(source).parents)}
                    assert kept & allowed_from_root, f".dockerignore drops {source}"
        for secret in service["build"].get("secrets", []):
            assert secret in compose["secrets"]
            assert f"id={secret}" in text
            default = _interpolated(compose["secrets"][secret]["file"])
            assert (COMPOSE_DIR / default).is_file(), f"secret {secret}: {default}"


def test_worker_images_run_their_console_script_on_their_contract_port(
    compose: dict[str, Any],
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for worker, settings in WORKER_SETTINGS.items():
        service = compose["services"][worker]
        _, dockerfile = _dockerfile(service)
        assert dockerfile == ROOT / "services" / "Dockerfile", worker
        assert scripts[f"deltawatch-{worker}"] == f"services.{worker}.__main__:main"
        port = settings.model_fields["http_port"].default
        assert service["build"]["args"] == {"WORKER": worker, "HTTP_PORT": str(port)}
        published = service["ports"][0]
        assert _interpolated(published) == f"127.0.0.1:{port}:{port}"
    # West's watcher is the watcher's build under an image name of its own, on its own host port.
    west, watcher = compose["services"]["watcher-west"], compose["services"]["watcher"]
    assert west["build"] == watcher["build"]
    assert west["image"].split(":")[0] == "deltawatch/watcher-west"
    assert _interpolated(west["ports"][0]) == "127.0.0.1:9104:9101"
    # The one worker Dockerfile runs deltawatch-$WORKER and serves on $HTTP_PORT.
    text = (ROOT / "services" / "Dockerfile").read_text()
    assert re.search(r"^ARG WORKER$", text, flags=re.M)
    assert re.search(r"^ARG HTTP_PORT$", text, flags=re.M)
    assert '"deltawatch-${WORKER}"' in text
    assert 'CMD ["deltawatch-worker"]' in text
    assert "ENV DELTAWATCH_HTTP_PORT=${HTTP_PORT}" in text
    assert "EXPOSE ${HTTP_PORT}" in text
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert re.search(r"^USER 10001$", text, flags=re.M), "workers run as a non-root user"
    # The project is installed as a wheel, as `pip install` does for a user, never in place.
    assert re.search(r"pip wheel --no-deps .* -w (\S+) \.$", text, flags=re.M)
    assert re.search(r"pip install --no-deps \S+/deltawatch-\*\.whl", text)
    assert " -e " not in text
    # The args come after every install step, so the three images share those layers.
    assert text.index("ARG WORKER") > text.index("pip install --no-deps")
    # The one-shot is the notifier's image: the same build, all cache hits.
    services = compose["services"]
    assert services["sample-subscription"]["build"] == services["notifier"]["build"]


def test_the_sink_image_runs_the_one_callback_sink(compose: dict[str, Any]) -> None:
    context, dockerfile = _dockerfile(compose["services"]["callback-sink"])
    assert context == ROOT
    text = dockerfile.read_text()
    copied = re.findall(r"^COPY (\S+) (\S+)$", text, flags=re.M)
    assert copied == [("deltawatch_tools/callback_sink.py", "/opt/sink/callback_sink.py")]
    assert 'CMD ["python", "/opt/sink/callback_sink.py"]' in text
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]


def test_worker_environment_variables_are_settings(compose: dict[str, Any]) -> None:
    for worker, settings in {**WORKER_SETTINGS, "watcher-west": WatcherSettings}.items():
        known = _aliases(settings)
        for variable in compose["services"][worker]["environment"]:
            assert variable in known, f"{worker}: {variable} is not in {settings.__name__}"


def test_one_shot_runs_a_mounted_script_that_reads_its_variables(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["sample-subscription"]
    source, target = service["volumes"][0].split(":")[:2]
    script = service["command"][-1]
    assert script.startswith(target + "/")
    path = COMPOSE_DIR / source / script.removeprefix(target + "/")
    assert path.is_file()
    text = path.read_text()
    known = _aliases(CommonSettings)
    for variable in service["environment"]:
        assert variable in known or f'"{variable}"' in text, variable
    sink = compose["services"]["callback-sink"]
    assert service["environment"]["SAMPLE_CALLBACK_URL"].startswith("http://callback-sink:8080/")
    assert _interpolated(sink["ports"][0]).endswith(":8080")


@pytest.mark.parametrize("watcher", sorted(WATCHED))
def test_each_watcher_reaches_its_own_clusters_api_server(
    compose: dict[str, Any], watcher: str
) -> None:
    services = compose["services"]
    service, (apiserver, cluster) = services[watcher], WATCHED[watcher]
    assert service["environment"]["KUBECONFIG"] == "/etc/deltawatch/kube/config"
    assert _interpolated(service["environment"]["DELTAWATCH_CLUSTER"]) == cluster
    kube_dir = COMPOSE_DIR / _mounts(service)["/etc/deltawatch/kube"]
    kubeconfig = yaml.safe_load((kube_dir / "config").read_text())
    server = kubeconfig["clusters"][0]["cluster"]
    assert server["server"] == "https://kubernetes:6443"
    # "kubernetes" (a name its self-signed certificate covers) is its own API server and no other.
    assert _resolve(compose, watcher, "kubernetes") == {apiserver}
    assert _resolve(compose, watcher, "kafka") == {"kafka"}
    command = services[apiserver]["command"]
    assert "--secure-port=6443" in command
    # It trusts its own API server's certificate: the volume of that server's --cert-dir.
    cert_dir = next(a for a in command if a.startswith("--cert-dir=")).split("=", 1)[1]
    assert server["certificate-authority"] == cert_dir + "/apiserver.crt"
    pki = _mounts(services[apiserver])[cert_dir]
    assert _mounts(service)[cert_dir] == pki
    assert pki in compose["volumes"]
    token = kubeconfig["users"][0]["user"]["token"]
    assert (kube_dir / "tokens.csv").read_text().startswith(f"{token},")
    assert _mounts(services[apiserver])["/etc/kubernetes/deltawatch"] == "./kube"
    # The API server's etcd is its own cluster's, with its own data.
    etcd_url = next(a for a in command if a.startswith("--etcd-servers="))
    etcd = etcd_url.split("//", 1)[1].split(":")[0]
    (etcd_service,) = _resolve(compose, apiserver, etcd)
    assert etcd_service == apiserver.replace("kube-apiserver", "etcd")


def test_the_two_clusters_share_nothing_but_kafka(compose: dict[str, Any]) -> None:
    services = compose["services"]
    first, west = (
        set(_mounts(services[a]).values()) for a in ("kube-apiserver", "kube-apiserver-west")
    )
    assert first & west == {"./kube"}  # the token file only, read-only
    assert set(_mounts(services["etcd"]).values()).isdisjoint(
        _mounts(services["etcd-west"]).values()
    )
    on_west = {name for name, s in services.items() if "west" in _networks(s)}
    assert on_west == {"kafka", "etcd-west", "kube-apiserver-west", "watcher-west"}
    # Only the first watcher takes a kubeconfig directory of yours; west's watches west.
    assert (
        "${DELTAWATCH_KUBECONFIG_DIR:-./kube}:/etc/deltawatch/kube:ro"
        in services["watcher"]["volumes"]
    )
    assert "./kube:/etc/deltawatch/kube:ro" in services["watcher-west"]["volumes"]


def test_host_port_variables_match_the_stack_driver(
    compose: dict[str, Any], compose_text: str
) -> None:
    defaults = {m.group(1): m.group(2) for m in INTERPOLATION.finditer(compose_text)}
    for _service, (variable, port) in HOST_PORTS.items():
        assert defaults.get(variable) == str(port), variable
    # Every published port is one of the driver's, under that service's variable, on 127.0.0.1.
    services = compose["services"]
    publishing = {name for name, s in services.items() if "ports" in s}
    assert publishing == set(HOST_PORTS)
    for name in publishing:
        (published,) = services[name]["ports"]
        variable, port = HOST_PORTS[name]
        assert published.startswith(f"127.0.0.1:${{{variable}:-{port}}}:"), name
    # The driver knows which of them only run with the kube profile.
    assert publishing & KUBE_PROFILE == KUBE_PROFILE_HOST_PORTS
    assert set(host_port_services(kube=False)) == publishing - KUBE_PROFILE
    assert set(host_port_services(kube=True)) == publishing


def test_every_variable_of_the_file_is_documented(compose_text: str) -> None:
    readme = (COMPOSE_DIR / "README.md").read_text()
    for variable in {m.group(1) for m in INTERPOLATION.finditer(compose_text)}:
        assert f"`{variable}`" in readme, f"compose/README.md does not explain {variable}"
