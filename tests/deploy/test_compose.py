"""deploy/: the compose file and Dockerfiles, checked by parsing (no Docker engine needed).

The compose file is read with PyYAML after the same `${VAR}` interpolation
Compose performs; environment names are checked against what
`Settings.from_env` actually reads; the gateway's start-up script is run for
real against Envoy's `--mode validate`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url
from tests.support.envoy import assert_envoy_accepts
from tests.support.settings_env import names_settings_reads

from batchplane.cli.main import _parser
from batchplane.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
IMAGE_DOCKERFILE = DEPLOY / "Dockerfile"
APP_SERVICES = {"migrate", "intake", "processor", "notifier", "gateway"}
LONG_RUNNING = {"intake", "processor", "notifier", "gateway"}
SAMPLE_ENV = {"POSTGRES_PASSWORD": "sample-password"}
SETTINGS_NAMES = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}
DEFAULTS = Settings()

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution (enough of it for this file)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"{name}: {arg}")
        if op == ":-" and not value:
            return arg
        if op == "-" and value is None:
            return arg
        return value or ""

    return _REFERENCE.sub(substitute, text)


def _compose(env: Mapping[str, str] = SAMPLE_ENV) -> dict[str, Any]:
    loaded = yaml.safe_load(_interpolate(COMPOSE.read_text(encoding="utf-8"), env))
    assert isinstance(loaded, dict)
    return loaded


def _raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _services(compose: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    services = (compose or _compose())["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _settings_of(service: dict[str, Any]) -> Settings:
    return Settings.from_env(_environment(service))


def _health_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def _memory_bytes(value: str | int) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(value).strip().lower())
    assert match, f"unreadable memory limit {value!r}"
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2]]
    return int(float(match[1]) * scale)


# --- compose: structure ------------------------------------------------------


def test_app_services_are_built_from_the_repo_dockerfile() -> None:
    services = _services()
    assert services.keys() >= APP_SERVICES
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"] == "batchplane:latest", name
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO, f"{name}: build context must be the repo root"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        assert dockerfile == IMAGE_DOCKERFILE


def test_every_depends_on_target_exists_with_a_usable_condition() -> None:
    services = _services()
    seen = 0
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            seen += 1
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if condition == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), target
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", target
    assert seen > 0


def test_intake_and_processor_wait_for_data_stores_and_migrations() -> None:
    services = _services()
    for name in ("intake", "processor", "notifier"):
        assert _depends_on(services[name]) == {
            "postgres": "service_healthy",
            "kafka": "service_healthy",
            "migrate": "service_completed_successfully",
        }
    assert _depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    assert _depends_on(services["gateway"]) == {"intake": "service_healthy"}


def test_commands_are_valid_batchplane_invocations() -> None:
    services = _services()
    parser = _parser()
    expected = {
        "migrate": ("db", "upgrade"),
        "intake": ("serve", "intake"),
        "processor": ("serve", "processor"),
    }
    for name, (command, action) in expected.items():
        assert "entrypoint" not in services[name], f"{name} must use the image's ENTRYPOINT"
        args = parser.parse_args(services[name]["command"])
        assert args.command == command
        assert getattr(args, "service", getattr(args, "action", None)) == action


def test_environment_names_are_all_read_by_settings() -> None:
    read = names_settings_reads()
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "BATCHPLANE_INTAKE_HOST"} <= read
    services = _services()
    for name in APP_SERVICES:
        env = _environment(services[name])
        assert env, f"{name} sets no environment"
        ours = {k for k in env if k.startswith("BATCHPLANE_") or k in SETTINGS_NAMES}
        assert ours == env.keys(), f"{name} sets variables batchplane never reads"
        unread = ours - read
        assert not unread, f"{name} sets {sorted(unread)}, which Settings.from_env never reads"
        _settings_of(services[name])  # and the values parse


def test_processor_runs_replicas_the_work_topic_can_feed() -> None:
    processor = _services()["processor"]
    replicas = processor["deploy"]["replicas"]
    settings = _settings_of(processor)
    assert 2 <= replicas <= settings.kafka.work_partitions


def test_app_containers_are_hardened_and_limited() -> None:
    services = _services()
    for name in APP_SERVICES:
        service = services[name]
        assert service.get("read_only") is True, name
        user = str(service.get("user", ""))
        assert user and user.split(":")[0] not in {"root", "0"}, name
        assert user == "10001", name
        assert "ALL" in service.get("cap_drop", []), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("cap_add"), name
        assert not service.get("privileged"), name
        assert any(str(t).split(":")[0] == "/tmp" for t in service.get("tmpfs", [])), name
        memory = service["deploy"]["resources"]["limits"]["memory"]
        assert _memory_bytes(memory) >= 128 * 1024**2, name
        assert float(service["deploy"]["resources"]["limits"]["cpus"]) > 0, name
    for name in LONG_RUNNING:
        health = services[name]["healthcheck"]
        assert not health.get("disable"), name
        assert health["test"][0] in {"CMD", "CMD-SHELL"}, name
    assert services["migrate"]["restart"] == "no"


def test_grpc_healthchecks_require_serving_on_the_settings_ports() -> None:
    services = _services()
    intake = _settings_of(services["intake"])
    processor = _settings_of(services["processor"])
    for name, port in (("intake", intake.intake_port), ("processor", processor.processor_port)):
        command = _health_command(services[name])
        assert f"'127.0.0.1:{port}'" in command, name
        assert "HealthCheckResponse.SERVING" in command, name
        assert "sys.exit(0 if" in command, name
    # The processor's health server stays on loopback, where its healthcheck runs.
    assert processor.processor_host == "127.0.0.1"


def test_ports_match_settings_defaults() -> None:
    services = _services()
    intake = _settings_of(services["intake"])
    assert intake.intake_host == "0.0.0.0"
    assert intake.intake_port == DEFAULTS.intake_port
    assert [str(p) for p in services["intake"]["expose"]] == [str(DEFAULTS.intake_port)]
    assert "ports" not in services["intake"], "only the gateway is published"
    assert "ports" not in services["processor"]

    gateway = _settings_of(services["gateway"])
    assert gateway.gateway_port == DEFAULTS.gateway_port
    assert gateway.gateway_host == "0.0.0.0"
    assert gateway.intake_host == "intake"
    assert gateway.intake_port == intake.intake_port
    published = [str(p) for p in services["gateway"]["ports"]]
    assert published == [f"{DEFAULTS.gateway_port}:{DEFAULTS.gateway_port}"]
    assert f"127.0.0.1:{gateway.gateway_port}/healthz" in _health_command(services["gateway"])


def test_database_url_names_the_postgres_service() -> None:
    services = _services()
    postgres_env = _environment(services["postgres"])
    for name in ("migrate", "intake", "processor", "notifier"):
        url = make_url(_settings_of(services[name]).database_url)
        assert url.drivername == "postgresql+asyncpg", name
        assert (url.host, url.port) == ("postgres", 5432), name
        assert url.database == postgres_env["POSTGRES_DB"], name
        assert url.username == postgres_env["POSTGRES_USER"], name
        assert url.password == SAMPLE_ENV["POSTGRES_PASSWORD"], name


def test_no_plaintext_secrets() -> None:
    secret_name = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)
    mandatory_reference = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:\?[^}]*\}")
    checked = 0
    for name, service in _services(_raw_compose()).items():
        for key, value in _environment(service).items():
            if secret_name.search(key):
                checked += 1
                assert mandatory_reference.fullmatch(value), f"{name}.{key} must be ${{VAR:?…}}"
            userinfo = re.match(r"^[\w+.-]+://([^/@]*)@", value)
            if userinfo and ":" in userinfo[1]:
                checked += 1
                password = userinfo[1].split(":", 1)[1]
                assert mandatory_reference.fullmatch(password), f"{name}.{key} embeds a password"
    assert checked >= 4
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        _compose(env={})


def test_kafka_is_a_single_kraft_node_matching_the_clients() -> None:
    services = _services()
    for name, service in services.items():
        assert "zookeeper" not in name.lower()
        assert "zookeeper" not in str(service.get("image", "")).lower()
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.0"
    env = _environment(kafka)
    assert not any("ZOOKEEPER" in key for key in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert voter == f"kafka{listeners['CONTROLLER']}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert advertised == f"PLAINTEXT://kafka{listeners['PLAINTEXT']}"
    for name in ("intake", "processor", "notifier"):
        bootstrap = _settings_of(services[name]).kafka.bootstrap_servers
        assert f"PLAINTEXT://{bootstrap}" == advertised, name
    health = _health_command(kafka)
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in health
    assert "localhost:9092" in health


def test_stateful_services_keep_data_in_named_volumes() -> None:
    compose = _compose()
    services = _services(compose)
    declared = set(compose["volumes"])
    for name, target in (
        ("kafka", "/var/lib/kafka/data"),
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
    ):
        mounts = dict(str(v).split(":", 1) for v in services[name]["volumes"])
        volume = next(source for source, dest in mounts.items() if dest == target)
        assert volume in declared, name
        assert "test" in services[name]["healthcheck"], name
    assert "pg_isready" in _health_command(services["postgres"])
    assert services["notifier"]["command"] == ["serve", "notifier"]


# --- compose: the gateway really starts Envoy with a valid configuration ------


def test_gateway_command_renders_a_config_envoy_accepts(tmp_path: Path) -> None:
    gateway = _services()["gateway"]
    command = gateway["command"]
    assert command[:2] == ["gateway", "run"]
    # `gateway run` is `gateway render` followed by exec'ing Envoy on the file:
    # render with the service's environment, then let the real Envoy validate it.
    out = tmp_path / "envoy.yaml"
    env = {**os.environ, **_environment(gateway)}
    rendered = subprocess.run(
        [str(Path(sys.executable).parent / "batchplane"), "gateway", "render", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert_envoy_accepts(out)

    bootstrap = yaml.safe_load(out.read_text(encoding="utf-8"))
    admin = bootstrap["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {
        "address": "0.0.0.0",
        "port_value": DEFAULTS.gateway_port,
    }
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = endpoints["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "intake",
        "port_value": DEFAULTS.intake_port,
    }


# --- Dockerfiles --------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _parse_dockerfile(path: Path) -> list[Stage]:
    """Instructions grouped by stage; continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    assert stages, f"{path}: no FROM"
    return stages


def _copy_sources(args: str) -> tuple[list[str], dict[str, str]]:
    words = shlex.split(args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, f"COPY needs a source and a destination: {args}"
    return paths[:-1], flags


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        or fnmatch.fnmatch(Path(prefix).name, pattern.removeprefix("**/"))
        for pattern in patterns
        if not pattern.startswith("!")
        for prefix in prefixes
    )


def _dockerfiles() -> list[Path]:
    found = sorted(DEPLOY.rglob("Dockerfile"))
    assert IMAGE_DOCKERFILE in found
    return found


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_runs_as_non_root_with_an_entrypoint_and_existing_sources(
    dockerfile: Path,
) -> None:
    stages = _parse_dockerfile(dockerfile)
    final = stages[-1]
    users = final.all("USER")
    assert users, f"{dockerfile}: the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert stages[-1].all("ENTRYPOINT") or any(s.all("ENTRYPOINT") for s in stages)
    names = {s.name for s in stages if s.name}
    ignore = _dockerignore()
    for stage in stages:
        for args in stage.all("COPY") + stage.all("ADD"):
            sources, flags = _copy_sources(args)
            if "from" in flags:
                assert flags["from"] in names, f"COPY --from={flags['from']}: no such stage"
                continue
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
                assert not _ignored(source, ignore), f"{source} is excluded by .dockerignore"


def test_image_dockerfile_generates_code_before_installing_the_wheel() -> None:
    build, final = _parse_dockerfile(IMAGE_DOCKERFILE)
    assert (build.base, build.name) == ("python:3.11-slim", "build")
    assert final.base == "python:3.11-slim"
    runs = build.all("RUN")
    assert any("pip install --no-cache-dir uv==0.13.9" in run for run in runs)
    generate = next(i for i, run in enumerate(runs) if "tools/genproto.py" in run)
    install = next(i for i, run in enumerate(runs) if "--no-editable" in run)
    assert generate < install
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in runs[install]
    assert "--no-dev" in runs[install]
    assert "--frozen" in runs[install]
    # The wheel carries the generated (git-ignored) package.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "src/batchplane/api/**" in wheel["artifacts"]
    assert _ignored("src/batchplane/api", _dockerignore()), "never ship a stale local api/"
    for name in (".venv", "var", ".git", "src/batchplane/__pycache__"):
        assert _ignored(name, _dockerignore()), name

    assert final.all("COPY") == ["--from=build /opt/venv /opt/venv"]
    assert final.all("USER") == ["10001"]
    assert "--uid 10001" in " ".join(final.all("RUN"))
    env = " ".join(final.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    entrypoint = json.loads(final.all("ENTRYPOINT")[-1])
    assert entrypoint == ["batchplane"]
    assert "batchplane" in pyproject["project"]["scripts"]
    cmd = json.loads(final.all("CMD")[-1])
    assert cmd == ["serve", "intake"]
    assert _parser().parse_args(cmd).service == "intake"
