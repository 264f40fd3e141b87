"""Static checks of the container stack: docker-compose.yml, deploy/docker/Dockerfile, the root .dockerignore.

Docker is not available to the tests, so this checks what can be checked without it: the files parse, every
build context, Dockerfile and mounted file exists, each service and the console publishes its CONTRACT port (one
source: deploy/local/lib.sh SERVICE_PORTS and CONSOLE_PORT, which must agree with the settings classes), builds
itself, and sets only environment variables its settings class reads (a misspelt name would otherwise be silently
ignored), Kafka is reachable from the host and from the containers, and the image runs migrations before serving
and contains the topic-creation script; the console reaches each service by name, every service shares the
console's key, which is not the operator's, and the console's reception holds intake's channel key. Each check is
a helper that returns a list of problems; the last tests break an in-memory copy on purpose to show that each
helper does report what it is meant to catch.
"""

from __future__ import annotations

import copy
import importlib
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LIB_SH = ROOT / "deploy" / "local" / "lib.sh"
TOPICS_SCRIPT = "deploy/local/topics.py"

SERVICES = ("intake", "routing", "supervision", "notify", "stats")
CONSOLE = "console"
SERVERS = (*SERVICES, CONSOLE)  # everything built from the Dockerfile that serves HTTP
KAFKA_HOST_PORT = 9092
# Environment variables a compose service may set although no settings class has them as a field.
NOT_SETTINGS = frozenset({"SERVICE"})
# What the one-shot `topics` container reads (deploy/local/topics.py).
TOPICS_ENV = frozenset({"kafka_bootstrap_servers"})

Compose = dict[str, Any]


# --- sources of truth -------------------------------------------------------------------------------------


def contract_ports(lib_sh: str) -> dict[str, int]:
    """The `declare -A SERVICE_PORTS=([intake]=8001 ...)` line of deploy/local/lib.sh."""
    line = re.search(r"^\s*declare -A SERVICE_PORTS=\((.*)\)\s*$", lib_sh, re.MULTILINE)
    if line is None:
        raise AssertionError("no `declare -A SERVICE_PORTS=(...)` line")
    return {name: int(port) for name, port in re.findall(r"\[([\w-]+)\]=(\d+)", line.group(1))}


def console_port(lib_sh: str) -> int:
    """The `CONSOLE_PORT=8006` line of deploy/local/lib.sh (the console is not among SERVICE_PORTS: no Kafka)."""
    line = re.search(r"^\s*CONSOLE_PORT=(\d+)\s*$", lib_sh, re.MULTILINE)
    if line is None:
        raise AssertionError("no `CONSOLE_PORT=...` line")
    return int(line.group(1))


def server_ports(lib_sh: str) -> dict[str, int]:
    """Every server's CONTRACT port: the five services' and the console's."""
    return {**contract_ports(lib_sh), CONSOLE: console_port(lib_sh)}


def settings_class(service: str) -> type[Any]:
    module = importlib.import_module(f"xinfang_{service}.settings")
    cls: type[Any] = getattr(module, f"{service.capitalize()}Settings")
    return cls


def settings_fields() -> dict[str, set[str]]:
    fields = {service: set(settings_class(service).model_fields) for service in SERVERS}
    fields["topics"] = set(TOPICS_ENV)
    return fields


def load_compose() -> Compose:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dockerignore_lines() -> list[str]:
    return DOCKERIGNORE.read_text(encoding="utf-8").splitlines()


# --- compose helpers --------------------------------------------------------------------------------------


def service_env(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's `environment`, in either the mapping or the list (`KEY=value`) form."""
    env = service.get("environment") or {}
    if isinstance(env, Mapping):
        return {str(k): None if v is None else str(v) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        key, sep, value = str(item).partition("=")
        out[key] = value if sep else None
    return out


def build_args(service: Mapping[str, Any]) -> dict[str, str | None]:
    build = service.get("build")
    args = build.get("args", {}) if isinstance(build, Mapping) else {}
    return service_env({"environment": args})


def published_ports(service: Mapping[str, Any]) -> list[tuple[int | None, int]]:
    """(host, container) for each `ports` entry, short (`[ip:]host:container[/proto]`) or long syntax."""
    out: list[tuple[int | None, int]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, Mapping):
            published = entry.get("published")
            out.append((None if published is None else int(published), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        container = int(parts[-1])
        host = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        out.append((host, container))
    return out


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


EDGE = "edge"


def port_problems(compose: Compose, ports: Mapping[str, int]) -> list[str]:
    """Each service scalable (`--scale`: no host port, no container_name) and serving its CONTRACT port; the
    edge proxy publishing exactly those ports on the host and forwarding each to its service."""
    problems = []
    services = compose.get("services", {})
    edge = services.get(EDGE)
    if edge is None:
        problems.append(f"{EDGE}: not in docker-compose.yml")
    elif sorted(published_ports(edge)) != sorted((port, port) for port in ports.values()):
        problems.append(f"{EDGE}: publishes {published_ports(edge)}, want exactly the contract ports")
    content = str(((compose.get("configs") or {}).get("edge-nginx") or {}).get("content", ""))
    for name, port in ports.items():
        if name not in services:
            problems.append(f"{name}: not in docker-compose.yml")
            continue
        service = services[name]
        if any(host is not None for host, _ in published_ports(service)):
            problems.append(f"{name}: publishes {published_ports(service)}, a host port (cannot be scaled)")
        if "container_name" in service:
            problems.append(f"{name}: has a container_name (cannot be scaled)")
        if f"listen {port};" not in content or f"{name}:{port};" not in content:
            problems.append(f"{name}: the edge does not forward {port} to {name}:{port}")
        env_port = service_env(service).get("HTTP_PORT")
        if env_port is not None and int(env_port) != port:
            problems.append(f"{name}: HTTP_PORT={env_port}, want {port}")
        arg_port = build_args(service).get("HTTP_PORT")
        if arg_port is None or int(arg_port) != port:
            problems.append(f"{name}: build arg HTTP_PORT={arg_port}, want {port}")
    return problems


def build_problems(compose: Compose, root: Path) -> list[str]:
    problems = []
    services = compose.get("services", {})
    for name in SERVERS:
        if "build" not in services.get(name, {}):
            problems.append(f"{name}: no build")
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = root / build.get("context", ".")
        if not context.is_dir():
            problems.append(f"{name}: build context {context} does not exist")
            continue
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: Dockerfile {dockerfile} does not exist")
        wanted = name if name in SERVERS else None
        arg = build_args(service).get("SERVICE")
        if wanted is not None and arg != wanted:
            problems.append(f"{name}: build arg SERVICE={arg}, want {wanted}")
        elif arg not in SERVERS:
            problems.append(f"{name}: build arg SERVICE={arg} is not one of {SERVERS}")
    return problems


def env_problems(compose: Compose, fields: Mapping[str, set[str]]) -> list[str]:
    problems = []
    services = compose.get("services", {})
    for name, known in fields.items():
        if name not in services:
            problems.append(f"{name}: not in docker-compose.yml")
            continue
        for var in service_env(services[name]):
            if var.lower() not in known and var.upper() not in NOT_SETTINGS:
                problems.append(f"{name}: sets {var}, which its settings do not read")
    return problems


def _bind_sources(service: Mapping[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, Mapping):
            if volume.get("type") == "bind":
                sources.append(str(volume["source"]))
            continue
        source = str(volume).split(":")[0]
        if source.startswith((".", "/", "~")):  # otherwise a named volume
            sources.append(source)
    env_file = service.get("env_file", [])
    for item in [env_file] if isinstance(env_file, str | Mapping) else env_file:
        if isinstance(item, Mapping) and item.get("required", True) is False:
            continue
        sources.append(str(item["path"] if isinstance(item, Mapping) else item))
    return sources


def mount_problems(compose: Compose, root: Path) -> list[str]:
    problems = []
    for name, service in compose.get("services", {}).items():
        for source in _bind_sources(service):
            if not (root / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
    for section in ("configs", "secrets"):
        for name, spec in (compose.get(section) or {}).items():
            if "file" in spec and not (root / spec["file"]).exists():
                problems.append(f"{section}.{name}: file {spec['file']} does not exist")
    return problems


def kafka_problems(compose: Compose) -> list[str]:
    services = compose.get("services", {})
    kafka = services.get("kafka")
    if kafka is None:
        return ["kafka: not in docker-compose.yml"]
    problems = []
    if (KAFKA_HOST_PORT, KAFKA_HOST_PORT) not in published_ports(kafka):
        problems.append(f"kafka: host port {KAFKA_HOST_PORT} is not published")
    env = service_env(kafka)
    advertised = {
        listener.split("://", 1)[1]
        for listener in (env.get("KAFKA_ADVERTISED_LISTENERS") or "").split(",")
        if "://" in listener
    }
    if f"127.0.0.1:{KAFKA_HOST_PORT}" not in advertised and f"localhost:{KAFKA_HOST_PORT}" not in advertised:
        problems.append(f"kafka: no listener advertised to the host on port {KAFKA_HOST_PORT}")
    if str(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() != "false":
        problems.append("kafka: automatic topic creation is not off")
    for name, service in services.items():
        bootstrap = service_env(service).get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap is None:
            continue
        for server in bootstrap.split(","):
            if server not in advertised or server.split(":")[0] in ("127.0.0.1", "localhost"):
                problems.append(f"{name}: KAFKA_BOOTSTRAP_SERVERS {server} is not Kafka's in-network listener")
    return problems


def dependency_problems(compose: Compose) -> list[str]:
    services = compose.get("services", {})
    problems = []
    for name, service in services.items():
        for target in depends_on(service):
            if target not in services:
                problems.append(f"{name}: depends on {target}, which is not a service")
    wanted = {"postgres": "service_healthy", "topics": "service_completed_successfully"}
    for name in SERVICES:
        deps = depends_on(services.get(name, {}))
        for target, condition in wanted.items():
            if deps.get(target) != condition:
                problems.append(f"{name}: does not wait for {target} ({condition})")
    console = depends_on(services.get(CONSOLE, {}))
    if console.get("postgres") != "service_healthy":
        problems.append(f"{CONSOLE}: does not wait for postgres (service_healthy)")
    for name in SERVICES:
        if name not in console:
            problems.append(f"{CONSOLE}: does not start after {name}, which it calls")
    if depends_on(services.get("topics", {})).get("kafka") != "service_healthy":
        problems.append("topics: does not wait for kafka (service_healthy)")
    for name in ("kafka", "postgres"):
        if "healthcheck" not in services.get(name, {}):
            problems.append(f"{name}: no healthcheck")
    return problems


def _default(value: str | None) -> str | None:
    """A compose value as it is without an .env file: `${VAR:-default}` is its default."""
    return None if value is None else re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def console_problems(compose: Compose, ports: Mapping[str, int]) -> list[str]:
    """The console calls each service by its in-network name and port, with the key every service shares; that key
    is not the operator's (a service takes a request with the console's key as the console's, which must name a
    person); its reception registers visits with the channel key intake knows."""
    services = compose.get("services", {})
    if CONSOLE not in services:
        return [f"{CONSOLE}: not in docker-compose.yml"]
    env = service_env(services[CONSOLE])
    problems = []
    for name in SERVICES:
        url = env.get(f"{name.upper()}_URL")
        if url != f"http://{name}:{ports[name]}":
            problems.append(f"{CONSOLE}: {name.upper()}_URL={url}, want http://{name}:{ports[name]}")
    key = env.get("CONSOLE_API_KEY")
    if not key:
        problems.append(f"{CONSOLE}: no CONSOLE_API_KEY")
    for name in SERVICES:
        theirs = service_env(services.get(name, {}))
        if theirs.get("CONSOLE_API_KEY") != key:
            problems.append(f"{name}: CONSOLE_API_KEY is not the console's")
        operator = theirs.get("OPERATOR_API_KEY")
        if key and (operator == key or _default(operator) == _default(key)):
            problems.append(f"{name}: CONSOLE_API_KEY is the same as OPERATOR_API_KEY")
    channel = service_env(services.get("intake", {})).get("CHANNEL_API_KEY")
    if not env.get("INTAKE_CHANNEL_KEY") or env.get("INTAKE_CHANNEL_KEY") != channel:
        problems.append(f"{CONSOLE}: INTAKE_CHANNEL_KEY is not intake's CHANNEL_API_KEY")
    if not env.get("SESSION_SECRET"):
        problems.append(f"{CONSOLE}: no SESSION_SECRET")
    return problems


def compose_problems(compose: Compose, root: Path, ports: Mapping[str, int]) -> list[str]:
    return [
        *port_problems(compose, ports),
        *console_problems(compose, ports),
        *build_problems(compose, root),
        *env_problems(compose, settings_fields()),
        *mount_problems(compose, root),
        *kafka_problems(compose),
        *dependency_problems(compose),
    ]


# --- Dockerfile helpers -----------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _words(args: str) -> list[str]:
    if args.startswith("["):
        words: list[str] = json.loads(args)
        return words
    return shlex.split(args)


def _words_of(command: str | list[str]) -> list[str]:
    """A compose `command`, in either the string or the list form."""
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def dockerfile_workdir(text: str) -> PurePosixPath:
    workdir = PurePosixPath("/")
    for instruction, args in dockerfile_instructions(text):
        if instruction == "WORKDIR":
            workdir = workdir / args
    return workdir


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_excludes(lines: list[str], rel_path: str) -> bool:
    """Whether .dockerignore keeps `rel_path` out of the build context: the last rule that matches the path or
    one of its parent directories decides; `!` rules put things back."""
    parts = PurePosixPath(rel_path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().strip("/"))
        regex = _ignore_regex(pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def image_path_of(dockerfile: str, rel_path: str, ignore: list[str], root: Path) -> PurePosixPath | None:
    """Where the build puts the context file `rel_path` (the last COPY/ADD that covers it), or None."""
    if dockerignore_excludes(ignore, rel_path):
        return None
    workdir = PurePosixPath("/")
    found: PurePosixPath | None = None
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "WORKDIR":
            workdir = workdir / args
        if instruction not in ("COPY", "ADD"):
            continue
        words = _words(args)
        if any(word.startswith("--from") for word in words):
            continue
        *sources, dest = [word for word in words if not word.startswith("--")]
        target = workdir / dest
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            src = posixpath.normpath(source)
            if src == rel_path:
                found = target / PurePosixPath(rel_path).name if into_dir else target
            elif src == "." or (rel_path.startswith(src + "/") and (root / src).is_dir()):
                found = target / (rel_path if src == "." else rel_path[len(src) + 1 :])
    return found


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    by_name: dict[str, list[str]] = {}
    for instruction, args in instructions:
        by_name.setdefault(instruction, []).append(args)
    problems = []
    if not any(args.startswith("python:3.11-slim") for args in by_name.get("FROM", [])):
        problems.append("FROM is not python:3.11-slim")
    cmd = " ".join(_words(by_name["CMD"][-1])) if "CMD" in by_name else ""
    migrate, serve = cmd.find("migrate"), cmd.find("serve")
    if migrate < 0 or serve < 0 or migrate > serve:
        problems.append(f"CMD does not run migrate and then serve: {cmd!r}")
    if "$SERVICE" not in cmd and "${SERVICE}" not in cmd:
        problems.append("CMD does not pick the console script by $SERVICE")
    if not any(re.search(r"\bSERVICE\b", args) for args in by_name.get("ARG", [])):
        problems.append("no build arg SERVICE")
    user = by_name.get("USER", ["root"])[-1]
    if user in ("root", "0"):
        problems.append("runs as root")
    if not by_name.get("EXPOSE"):
        problems.append("no EXPOSE")
    healthcheck = " ".join(by_name.get("HEALTHCHECK", []))
    if "/health" not in healthcheck or "HTTP_PORT" not in healthcheck or "urllib" not in healthcheck:
        problems.append("no HEALTHCHECK of /health on $HTTP_PORT with urllib")
    if not any(re.search(r"\bHTTP_HOST=0\.0\.0\.0\b", args) for args in by_name.get("ENV", [])):
        problems.append("HTTP_HOST is not 0.0.0.0: the service would not be reachable from outside")
    if not any("uv sync" in args and "--frozen" in args and "--no-dev" in args for args in by_name["RUN"]):
        problems.append("no `uv sync --frozen --no-dev`")
    return problems


# --- the real files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return server_ports(LIB_SH.read_text(encoding="utf-8"))


def test_compose_parses_and_has_the_stack(compose: Compose) -> None:
    services = set(compose["services"])
    assert {*SERVERS, "kafka", "postgres", "topics", "otel-collector", "jaeger"} <= services


def test_ports_have_one_source(ports: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PORT", raising=False)
    assert set(ports) == set(SERVERS)
    from_settings = {name: settings_class(name)(_env_file=None).http_port for name in SERVICES}
    # The console's settings refuse to start without its key: its default port is what it serves on.
    from_settings[CONSOLE] = settings_class(CONSOLE).model_fields["http_port"].default
    assert ports == from_settings


def test_the_console_calls_the_services_with_their_shared_key(compose: Compose, ports: dict[str, int]) -> None:
    assert console_problems(compose, ports) == []


def test_each_service_publishes_its_contract_port(compose: Compose, ports: dict[str, int]) -> None:
    assert port_problems(compose, ports) == []


def test_builds_exist_and_pick_their_service(compose: Compose) -> None:
    assert build_problems(compose, ROOT) == []


def test_environment_names_are_settings_fields(compose: Compose) -> None:
    assert env_problems(compose, settings_fields()) == []


def test_mounted_files_exist(compose: Compose) -> None:
    assert mount_problems(compose, ROOT) == []
    collector = compose["services"]["otel-collector"]
    assert "./deploy/docker/otel-collector.yaml" in _bind_sources(collector)


def test_otel_collector_config_sends_traces_to_jaeger() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "docker" / "otel-collector.yaml").read_text(encoding="utf-8"))
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    traces = config["service"]["pipelines"]["traces"]
    exporters = [config["exporters"][name] for name in traces["exporters"]]
    assert any(exporter.get("endpoint") == "jaeger:4317" for exporter in exporters)
    assert "batch" in traces["processors"]


def test_kafka_serves_host_and_containers(compose: Compose) -> None:
    assert kafka_problems(compose) == []


def test_start_order(compose: Compose) -> None:
    assert dependency_problems(compose) == []


def test_dockerfile() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []


def test_image_holds_the_workspace_and_the_topics_script(compose: Compose) -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    ignore = dockerignore_lines()
    for needed in (
        "pyproject.toml",
        "uv.lock",
        "shared/pyproject.toml",
        "services/intake/pyproject.toml",
        "services/console/pyproject.toml",
    ):
        assert image_path_of(dockerfile, needed, ignore, ROOT) is not None, needed
    in_image = image_path_of(dockerfile, TOPICS_SCRIPT, ignore, ROOT)
    assert in_image is not None
    topics = compose["services"]["topics"]
    script = next(word for word in _words_of(topics["command"]) if word.endswith(".py"))
    workdir = PurePosixPath(topics.get("working_dir") or dockerfile_workdir(dockerfile))
    assert workdir / script == in_image


def test_dockerignore_keeps_local_state_out() -> None:
    ignore = dockerignore_lines()
    for kept_out in (
        ".local/credentials.env",
        ".venv/bin/python",
        ".git/HEAD",
        "shared/src/x/__pycache__/a.pyc",
    ):
        assert dockerignore_excludes(ignore, kept_out), kept_out
    for kept_in in ("uv.lock", "shared/src/xinfang_shared/settings.py", TOPICS_SCRIPT):
        assert not dockerignore_excludes(ignore, kept_in), kept_in


# --- the checks catch what they are for -------------------------------------------------------------------


_DELETE = object()


def _set(path: str, value: Any) -> Callable[[Compose], None]:
    def apply(compose: Compose) -> None:
        *parents, last = path.split(".")
        node = compose
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return apply


def _rename_env(service: str, old: str, new: str) -> Callable[[Compose], None]:
    def apply(compose: Compose) -> None:
        env = compose["services"][service]["environment"]
        env[new] = env.pop(old)

    return apply


def _everywhere(var: str, value: str) -> Callable[[Compose], None]:
    """`var` set to `value` in every server (the shared block, as YAML's merge has copied it into each)."""

    def apply(compose: Compose) -> None:
        for name in SERVERS:
            compose["services"][name]["environment"][var] = value

    return apply


BREAKAGES: list[tuple[str, Callable[[Compose], None], str]] = [
    (
        "misspelt variable",
        _rename_env("routing", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVER"),
        "sets",
    ),
    ("wrong host port", _set("services.intake.ports", ["18001:8001"]), "publishes"),
    ("extra port", _set("services.stats.ports", ["8005:8005", "9000:9000"]), "publishes"),
    ("fixed container name", _set("services.routing.container_name", "routing"), "container_name"),
    ("edge port missing", _set("services.edge.ports", ["8001:8001"]), "edge: publishes"),
    ("wrong HTTP_PORT", _set("services.notify.environment.HTTP_PORT", "8000"), "HTTP_PORT=8000"),
    ("service missing", _set("services.supervision", _DELETE), "supervision: not in"),
    ("wrong SERVICE arg", _set("services.intake.build.args.SERVICE", "routing"), "SERVICE=routing"),
    ("missing Dockerfile", _set("services.stats.build.dockerfile", "deploy/docker/Nope"), "does not exist"),
    ("missing context", _set("services.stats.build.context", "no-such-dir"), "does not exist"),
    ("missing mount", _set("services.otel-collector.volumes", ["./nope.yaml:/etc/x.yaml:ro"]), "nope.yaml"),
    ("kafka port unpublished", _set("services.kafka.ports", []), "host port 9092"),
    (
        "host bootstrap",
        _set("services.intake.environment.KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "in-network",
    ),
    (
        "auto topic creation",
        _set("services.kafka.environment.KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true"),
        "automatic",
    ),
    (
        "no wait for topics",
        _set("services.routing.depends_on", {"postgres": {"condition": "service_healthy"}}),
        "topics",
    ),
    ("topics before kafka", _set("services.topics.depends_on", ["kafka"]), "kafka"),
    ("console missing", _set("services.console", _DELETE), "console: not in"),
    ("console's port unforwarded", _set("services.edge.ports", [f"{p}:{p}" for p in range(8001, 8006)]), "publishes"),
    (
        "console backend on the host",
        _set("services.console.environment.ROUTING_URL", "http://127.0.0.1:8002"),
        "ROUTING_URL",
    ),
    ("console without notify", _set("services.console.environment.NOTIFY_URL", _DELETE), "NOTIFY_URL=None"),
    ("console key not shared", _set("services.stats.environment.CONSOLE_API_KEY", "other"), "stats: CONSOLE_API_KEY"),
    (
        "console key is the operator's",
        _everywhere("CONSOLE_API_KEY", "${CONSOLE_API_KEY:-local-dev-only}"),
        "same as OPERATOR_API_KEY",
    ),
    ("reception without intake's key", _set("services.intake.environment.CHANNEL_API_KEY", "x"), "INTAKE_CHANNEL_KEY"),
    ("console before routing", _set("services.console.depends_on.routing", _DELETE), "after routing"),
    ("console builds another", _set("services.console.build.args.SERVICE", "stats"), "SERVICE=stats"),
]


@pytest.mark.parametrize(("what", "breakage", "reported"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_compose_checks_catch(
    compose: Compose, ports: dict[str, int], what: str, breakage: Callable[[Compose], None], reported: str
) -> None:
    assert compose_problems(compose, ROOT, ports) == []
    broken = copy.deepcopy(compose)
    breakage(broken)
    problems = compose_problems(broken, ROOT, ports)
    assert any(reported in problem for problem in problems), (what, problems)


def test_contract_ports_parser() -> None:
    assert contract_ports("declare -A SERVICE_PORTS=([a]=1 [b-c]=22)\n") == {"a": 1, "b-c": 22}
    with pytest.raises(AssertionError):
        contract_ports("SERVICE_PORTS=8001\n")


def test_env_and_port_parsers() -> None:
    assert service_env({"environment": ["A=1", "B"]}) == {"A": "1", "B": None}
    ports = ["127.0.0.1:8001:8001", "9092:9092/tcp", "80", {"target": 81, "published": "82"}]
    assert published_ports({"ports": ports}) == [(8001, 8001), (9092, 9092), (None, 80), (82, 81)]


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        (
            lambda text: re.sub(r"^CMD .*$", 'CMD ["sh", "-c", "exec xinfang-$SERVICE serve"]', text, flags=re.M),
            "CMD",
        ),
        (lambda text: re.sub(r"^USER .*$", "USER root", text, flags=re.M), "root"),
        (lambda text: re.sub(r"HTTP_HOST=\S+", "HTTP_HOST=127.0.0.1", text), "HTTP_HOST"),
        (lambda text: re.sub(r"^HEALTHCHECK .*?(?=^\S)", "", text, flags=re.M | re.S), "HEALTHCHECK"),
    ],
)
def test_dockerfile_checks_catch(edit: Callable[[str], str], reported: str) -> None:
    broken = edit(DOCKERFILE.read_text(encoding="utf-8"))
    assert any(reported in problem for problem in dockerfile_problems(broken))


def test_image_path_follows_copy_and_dockerignore() -> None:
    real = DOCKERFILE.read_text(encoding="utf-8")
    without = "\n".join(line for line in real.splitlines() if "topics.py" not in line)
    assert image_path_of(without, TOPICS_SCRIPT, [], ROOT) is None
    assert image_path_of("WORKDIR /app\nCOPY . .\n", TOPICS_SCRIPT, [], ROOT) == PurePosixPath(
        "/app/deploy/local/topics.py"
    )
    assert image_path_of("WORKDIR /app\nCOPY deploy/ /srv/\n", TOPICS_SCRIPT, [], ROOT) == PurePosixPath(
        "/srv/local/topics.py"
    )
    assert image_path_of("WORKDIR /app\nCOPY ./deploy/local/topics.py ./\n", TOPICS_SCRIPT, [], ROOT) == (
        PurePosixPath("/app/topics.py")
    )
    assert image_path_of("WORKDIR /app\nCOPY . .\n", TOPICS_SCRIPT, ["deploy"], ROOT) is None
    assert image_path_of("WORKDIR /app\nCOPY . .\n", TOPICS_SCRIPT, ["deploy", "!deploy/local"], ROOT)
