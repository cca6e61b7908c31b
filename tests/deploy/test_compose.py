"""docker-compose.yml, the Dockerfile and deploy/: valid for docker-compose (every profile), consistent with the
Prometheus, Grafana and llmops configs they mount, and free of secrets and unpinned images.

`docker-compose config` needs the Debian package `docker-compose` (or Docker Compose v2): without it that test is
skipped on a workstation and fails in CI (env ``CI`` set). The other checks read the files and need nothing."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from llmops.config import load_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DEPLOY_CONFIG = REPO / "deploy" / "config.yaml"

# Services whose images have no shell or HTTP client (FROM scratch): their health check is disabled on purpose.
NO_PROBE_POSSIBLE = {"otel-collector", "jaeger"}
# Scrape targets in prometheus/prometheus.yml that the compose file does not ship (documented as optional there).
OPTIONAL_TARGETS = {"dcgm-exporter"}
PROFILES = {"gpu": {"vllm", "gpu-exporter"}, "tracing": {"otel-collector", "jaeger"}}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
_SECRET_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),  # OpenAI, Anthropic (sk-ant-...)
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b[0-9a-fA-F]{32,}\b"),  # long hex (tokens, sha256 of keys)
    re.compile(r"(?<![\w/.-])(?=[\w+-]*\d)(?=[\w+-]*[A-Za-z])[A-Za-z0-9+_-]{40,}(?![\w/.-])"),  # long opaque
]
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
_PLACEHOLDERS = {"", "change-me", "changeme"}


def interpolate(value: str) -> str:
    """Compose-style ``${NAME:-default}`` with an empty environment: the default, or empty."""
    return _VAR.sub(lambda m: m.group(2) or "", value)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount of a service (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = interpolate(volume).split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def host_path(service_name: str, container_path: str) -> Path | None:
    """The repository path a container path of ``service_name`` comes from, through its bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(services()[service_name]):
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return (REPO / source / wanted.relative_to(target_path)).resolve()
    return None


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        text = interpolate(str(entry["target"] if isinstance(entry, dict) else entry)).split("/")[0]
        ports.add(int(text.rsplit(":", 1)[-1]))
    return ports


# ---- docker-compose itself ----------------------------------------------------------------------------------------
@cache
def find_compose() -> tuple[str, ...] | None:
    """docker-compose (v1, the Debian package) or ``docker compose`` (v2), whichever is installed."""
    exe = shutil.which("docker-compose")
    if exe:
        return (exe,)
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20).returncode == 0:
        return (docker, "compose")
    return None


def require_compose() -> tuple[str, ...]:
    command = find_compose()
    if command is None:
        message = "docker-compose is not installed (Debian: apt-get install docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run this test")
        pytest.skip(message)
    return command


@pytest.mark.parametrize(
    ("profiles", "env_file"),
    [
        ((), None),
        (("gpu",), None),
        (("tracing",), None),
        (("gpu", "tracing"), ENV_EXAMPLE),
    ],
    ids=["default", "gpu", "tracing", "all-with-env-example"],
)
def test_docker_compose_config(profiles: tuple[str, ...], env_file: Path | None, tmp_path: Path) -> None:
    compose_cmd = require_compose()
    if env_file is None:  # an empty env file: the defaults in the compose file must be enough
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    args = [*compose_cmd, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file)]
    for profile in profiles:
        args += ["--profile", profile]
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL") if name in os.environ}
    result = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, f"a variable has no default: {result.stderr}"


# ---- structure of docker-compose.yml ------------------------------------------------------------------------------
def test_expected_services_and_profiles() -> None:
    expected = {"gateway", "monitors", "redis", "simulator", "prometheus", "alertmanager", "pushgateway", "grafana"}
    expected |= {name for names in PROFILES.values() for name in names}
    assert set(services()) == expected
    for name, service in services().items():
        profiles = set(service.get("profiles", []))
        wanted = {profile for profile, members in PROFILES.items() if name in members}
        assert profiles == wanted, f"{name}: profiles {sorted(profiles)}, expected {sorted(wanted)}"


def test_every_service_has_a_healthcheck_and_restart_policy() -> None:
    for name, service in services().items():
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: restart policy"
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        if name in NO_PROBE_POSSIBLE:
            assert check == {"disable": True}, f"{name}: expected an explicitly disabled healthcheck"
            continue
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: healthcheck"
        assert not check.get("disable"), name


def test_healthchecks_probe_the_service_port() -> None:
    for name, service in services().items():
        if name in NO_PROBE_POSSIBLE or name == "redis":
            continue
        probe = " ".join(service["healthcheck"]["test"])
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", probe)}
        assert ports and ports <= container_ports(service), f"{name}: probes {ports}, serves {container_ports(service)}"


def test_depends_on_waits_for_health_where_it_matters() -> None:
    svc = services()
    assert svc["gateway"]["depends_on"]["simulator"]["condition"] == "service_healthy"
    assert svc["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["monitors"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["monitors"]["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert svc["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name, service in svc.items():  # a default service must not wait for one that only runs in a profile
        if service.get("profiles"):
            continue
        for dependency in service.get("depends_on", {}):
            assert not svc[dependency].get("profiles"), f"{name} depends on {dependency}, which is in a profile"


def test_bind_mounted_paths_exist() -> None:
    mounts = 0
    for name, service in services().items():
        for source, _ in bind_mounts(service):
            mounts += 1
            assert (REPO / source).exists(), f"{name}: bind mount source {source} is missing"
        build = service.get("build")
        if build:
            context = REPO / (build["context"] if isinstance(build, dict) else build)
            assert (
                context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            ).is_file()
    assert mounts >= 8


def test_named_volumes_for_state() -> None:
    volumes = set(compose()["volumes"])
    assert {"prometheus-data", "grafana-data", "redis-data"} <= volumes
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if not source.startswith((".", "/", "~")):
                assert source in volumes, f"{name}: volume {source} is not declared"


def test_redis_keeps_its_data_across_restarts() -> None:
    """Spend budgets live only in Redis: the shipped Redis writes an append-only file to a named volume."""
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in {"everysec", "always"}
    assert any(str(volume).split(":")[1:2] == ["/data"] for volume in redis["volumes"])


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = interpolate(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image} is not pinned to a version"
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for line in re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, flags=re.MULTILINE):
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", line), line


def test_gpu_services_reserve_gpus() -> None:
    for name in PROFILES["gpu"]:
        devices = services()[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
    command = services()["vllm"]["command"]
    assert "--served-model-name" in command and "--enable-prompt-tokens-details" in command
    assert interpolate(command[0]) and not command[0].startswith("-")  # the model, positional for `vllm serve`


# ---- secrets ------------------------------------------------------------------------------------------------------
def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _strings(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [item for i, value in enumerate(node) for item in _strings(value, f"{path}[{i}]")]
    return [(path, str(node))] if node is not None else []


def test_no_literal_secrets() -> None:
    for path in (COMPOSE, DEPLOY_CONFIG, REPO / "deploy" / "otel-collector.yaml", ENV_EXAMPLE):
        text = path.read_text(encoding="utf-8")
        for pattern in _SECRET_PATTERNS:
            match = pattern.search(text)
            assert match is None, f"{path.name}: looks like a secret: {match.group(0)[:12]}..."
    for name, service in services().items():
        environment = service.get("environment", {})
        items = environment.items() if isinstance(environment, dict) else (e.split("=", 1) for e in environment)
        for key, value in items:
            if _SECRET_NAME.search(key):
                assert isinstance(value, str) and _VAR.fullmatch(value.strip()), (
                    f"{name}: {key} must come from the environment (${{{key}:-}}), not be written in the file"
                )
    for path, value in _strings(yaml.safe_load(DEPLOY_CONFIG.read_text(encoding="utf-8"))):
        if _SECRET_NAME.search(path.rsplit(".", 1)[-1]):
            assert _VAR.fullmatch(value.strip()), f"deploy/config.yaml {path}: use ${{NAME:-}}"


def test_env_example_has_no_values_for_secrets() -> None:
    names = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        names.add(key)
        assert "#" not in value, f".env.example {key}: keep comments on their own line (docker-compose v1 reads them)"
        if _SECRET_NAME.search(key):
            assert value in _PLACEHOLDERS, f".env.example {key}: leave secrets empty or a placeholder"
    used = set(_VAR.findall(COMPOSE.read_text(encoding="utf-8")))
    missing = {name for name, _ in used} - names
    assert not missing, f"variables of docker-compose.yml not in .env.example: {sorted(missing)}"
    assert (REPO / ".env").exists() is False or ".env" in (REPO / ".gitignore").read_text(encoding="utf-8")


# ---- consistency with the files it mounts -------------------------------------------------------------------------
def test_prometheus_targets_are_compose_services() -> None:
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [t for job in prometheus["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    targets += [
        t for am in prometheus["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost" or host in OPTIONAL_TARGETS:
            continue
        assert host in services(), f"prometheus target {target}: no compose service {host}"
        assert int(port) in container_ports(services()[host]), (
            f"prometheus target {target}: {host} does not serve {port}"
        )


def test_prometheus_rule_files_are_mounted() -> None:
    config_in_container = "/etc/prometheus/prometheus.yml"
    assert f"--config.file={config_in_container}" in services()["prometheus"]["command"]
    assert host_path("prometheus", config_in_container) == REPO / "prometheus" / "prometheus.yml"
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    for rule_file in prometheus["rule_files"]:
        in_container = PurePosixPath(config_in_container).parent / rule_file  # relative to the config file
        found = host_path("prometheus", str(in_container))
        assert found is not None and found.is_file(), f"rule file {rule_file} is not mounted at {in_container}"


def test_alertmanager_config_is_mounted() -> None:
    command = services()["alertmanager"]["command"]
    flag = next(c for c in command if c.startswith("--config.file="))
    assert host_path("alertmanager", flag.split("=", 1)[1]) == REPO / "prometheus" / "alertmanager.yml"


def test_grafana_provisioning_paths_match() -> None:
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == REPO / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text(encoding="utf-8"))
    for provider in providers["providers"]:
        dashboards = host_path("grafana", provider["options"]["path"])
        assert dashboards is not None and list(dashboards.glob("*.json")), provider["options"]["path"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    for source in datasources["datasources"]:
        url = urlsplit(source["url"])
        assert url.hostname in services() and url.port in container_ports(services()[url.hostname]), source["url"]
    home = services()["grafana"]["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path("grafana", home) is not None and host_path("grafana", home).is_file()


def test_otel_collector_config_is_mounted_and_points_at_jaeger() -> None:
    command = services()["otel-collector"]["command"]
    config_path = next(c for c in command if c.startswith("--config=")).split("=", 1)[1]
    collector = yaml.safe_load(host_path("otel-collector", config_path).read_text(encoding="utf-8"))
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    for exporter in pipeline["exporters"]:
        endpoint = collector["exporters"][exporter]["endpoint"]
        assert endpoint.split(":")[0] in services(), endpoint
    assert container_ports(services()["otel-collector"]) >= {4317, 4318}


def test_llmops_config_for_compose_is_valid_and_uses_compose_hosts() -> None:
    for service in ("gateway", "monitors"):
        assert host_path(service, "/etc/llmops/config.yaml") == DEPLOY_CONFIG
        assert "/etc/llmops/config.yaml" in services()[service]["command"]
    config = load_config(DEPLOY_CONFIG, environ={})
    assert config.telemetry is not None and config.telemetry.otlp_endpoint is None  # empty endpoint = tracing off
    assert config.server.host == "0.0.0.0" and config.server.port in container_ports(services()["gateway"])
    assert urlsplit(config.redis.url).hostname == "redis"
    assert urlsplit(config.monitors.gateway_url).hostname == "gateway"
    metrics_port = services()["monitors"]["command"][services()["monitors"]["command"].index("--metrics-port") + 1]
    assert int(metrics_port) in container_ports(services()["monitors"])
    for model in config.models:
        for deployment in model.deployments:
            url = urlsplit(deployment.base_url)
            if url.hostname in services():
                assert url.port in container_ports(services()[url.hostname]), deployment.base_url
    simulator = services()["simulator"]["command"]
    served = simulator[simulator.index("--model") + 1]
    assert any(d.model == served for m in config.models for d in m.deployments if "simulator" in d.base_url)
    on = load_config(DEPLOY_CONFIG, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"})
    assert on.telemetry is not None and on.telemetry.otlp_endpoint == "http://otel-collector:4318"


# ---- Dockerfile ---------------------------------------------------------------------------------------------------
def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Simplified .dockerignore matching: last matching pattern wins, a pattern matches a path or its parents."""
    ignored = False
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not negate
    return ignored


def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r'^ENTRYPOINT \["llmops"\]$', text, flags=re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "pip install --no-cache-dir" in text and "--constraint" in text
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE) for src in line.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing"
        assert not _dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for ignored in (".venv", ".git", ".env", "tests", "gateway/__pycache__"):
        assert _dockerignored(ignored, patterns), f".dockerignore should exclude {ignored}"


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = {}
    for line in (REPO / "deploy" / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            specifiers = list(requirement.specifier)
            assert len(specifiers) == 1 and specifiers[0].operator == "==", f"constraints.txt: {line} is not exact"
            pins[canonicalize_name(requirement.name)] = specifiers[0].version
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned: run .venv/bin/python deploy/freeze_constraints.py"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy {dependency}: run .venv/bin/python deploy/freeze_constraints.py"
        )
