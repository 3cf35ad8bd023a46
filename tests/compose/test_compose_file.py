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
from deltawatch_tools.compose_stack import HOST_PORTS, UPSTREAM_IMAGES

pytestmark = pytest.mark.compose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
WORKER_SETTINGS: dict[str, type[CommonSettings]] = {
    "watcher": WatcherSettings,
    "differ": DifferSettings,
    "notifier": NotifierSettings,
}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


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
    for name in ("etcd", "kube-apiserver"):
        assert services[name]["profiles"] == ["kube"]
        assert services[name]["image"].startswith("registry.k8s.io/")
    unprofiled = [n for n, s in services.items() if n not in ("etcd", "kube-apiserver")]
    assert all("profiles" not in services[n] for n in unprofiled)
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
    for worker, settings in WORKER_SETTINGS.items():
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


def test_kube_profile_serves_the_kubeconfig_the_watcher_mounts(compose: dict[str, Any]) -> None:
    watcher = compose["services"]["watcher"]
    assert watcher["environment"]["KUBECONFIG"] == "/etc/deltawatch/kube/config"
    mount = next(v for v in watcher["volumes"] if v.endswith(":/etc/deltawatch/kube:ro"))
    kube_dir = COMPOSE_DIR / _interpolated(mount).split(":")[0]
    kubeconfig = yaml.safe_load((kube_dir / "config").read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    apiserver = compose["services"]["kube-apiserver"]
    assert cluster["server"] == "https://kubernetes:6443"
    assert "kubernetes" in apiserver["networks"]["default"]["aliases"]
    assert "--secure-port=6443" in apiserver["command"]
    cert_dir = next(a for a in apiserver["command"] if a.startswith("--cert-dir="))
    assert cluster["certificate-authority"] == cert_dir.split("=", 1)[1] + "/apiserver.crt"
    token = kubeconfig["users"][0]["user"]["token"]
    assert (kube_dir / "tokens.csv").read_text().startswith(f"{token},")


def test_host_port_variables_match_the_stack_driver(compose_text: str) -> None:
    defaults = {m.group(1): m.group(2) for m in INTERPOLATION.finditer(compose_text)}
    for _service, (variable, port) in HOST_PORTS.items():
        assert defaults.get(variable) == str(port), variable


def test_every_variable_of_the_file_is_documented(compose_text: str) -> None:
    readme = (COMPOSE_DIR / "README.md").read_text()
    for variable in {m.group(1) for m in INTERPOLATION.finditer(compose_text)}:
        assert f"`{variable}`" in readme, f"compose/README.md does not explain {variable}"
