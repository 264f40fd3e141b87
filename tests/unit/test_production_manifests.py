"""The production manifests (deploy/production/render.py), offline: kubeconform -strict against the real schemas
(Kubernetes' from PyPI kubernetes-validate, the operators' from the CRDs in ../shared/k8s-crds), a wrong field
refused, and the policies on the parsed YAML: every topic of the registry has its KafkaTopic, every consumer group
its ACL and its ScaledObject, no more replicas than partitions, selectors that select, probes on ports that exist,
non-root pods, secrets only by reference and only to the services that hold them; the console a server like the
others but without Kafka, calling the services through their in-cluster Services, which take HTTP from it and
believe its key.

kubeconform is built by deploy/local/kubeconform.sh (install.sh runs it). Without it these checks are skipped on a
developer's machine and fail under CI (CI=true), where the install step must have built it."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from xinfang_shared.contracts.acls import acls, principals
from xinfang_shared.contracts.topics import CONTRACT_TOPICS, SERVICES, topics_to_create
from xinfang_shared.db import service_role

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ROOT / "deploy" / "production"


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


render = _load("production_render", PRODUCTION / "render.py")
schemas = _load("production_schemas", PRODUCTION / "schemas.py")

RENDERED: dict[str, list[dict[str, Any]]] = render.render()
DOCS = [d for part in RENDERED.values() for d in part]


def of(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of(kind) if d["metadata"]["name"] == name]
    return found


def deployment(service: str) -> dict[str, Any]:
    return named("Deployment", f"xinfang-{service}")


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def env_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(doc)["env"]}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- kubeconform ------------------------------------------------------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def kubeconform() -> Path:
    binary = schemas.kubeconform_binary()
    if binary is None:
        message = "kubeconform is not installed (bash deploy/local/kubeconform.sh builds it into .local/bin)"
        if _in_ci():
            pytest.fail(message + ": CI's install step must have built it")
        pytest.skip(message)
    found: Path = binary
    return found


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    written: Path = schemas.write(tmp_path_factory.mktemp("schemas"))
    return written


@pytest.fixture
def check(kubeconform: Path, schema_dir: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """kubeconform -strict over the given documents (default: every rendered manifest)."""
    counter = iter(range(1_000))

    def run(docs: list[dict[str, Any]] | None = None) -> subprocess.CompletedProcess[str]:
        out = tmp_path / f"manifests-{next(counter)}"
        if docs is None:
            render.write(out, RENDERED)
        else:
            out.mkdir()
            (out / "docs.yaml").write_text(render.dump(docs), encoding="utf-8")
        result: subprocess.CompletedProcess[str] = schemas.kubeconform(out, schema_dir, kubeconform)
        return result

    return run


def test_every_manifest_is_valid_against_the_real_schemas(check: Callable[..., Any]) -> None:
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(
        r"(\d+) resources found.*Valid: (\d+), Invalid: (\d+), Errors: (\d+), Skipped: (\d+)", result.stdout
    )
    assert summary, result.stdout
    found, valid, invalid, errors, skipped = map(int, summary.groups())
    assert (found, valid, invalid, errors, skipped) == (len(DOCS), len(DOCS), 0, 0, 0)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return doc


WRONG: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    # A misspelt field of a built-in kind, a wrong type, a field each operator's CRD does not have.
    "deployment: misspelt probe path": (
        lambda: _set(deployment("routing"), "spec.template.spec.containers.0.livenessProbe.httpGet.paht", "/x"),
        "paht",
    ),
    "deployment: replicas as text": (lambda: _set(deployment("intake"), "spec.replicas", "two"), "replicas"),
    "service: unknown field": (lambda: _set(named("Service", "xinfang-stats"), "spec.portz", []), "portz"),
    "kafka topic: unknown field": (
        lambda: _set(named("KafkaTopic", "matters.status.v1"), "spec.partition", 12),
        "partition",
    ),
    "kafka topic: partitions as text": (
        lambda: _set(named("KafkaTopic", "matters.status.v1"), "spec.partitions", "twelve"),
        "partitions",
    ),
    "kafka: unknown listener field": (
        lambda: _set(of("Kafka")[0], "spec.kafka.listeners.0.sasl", True),
        "sasl",
    ),
    "kafka user: unknown acl field": (
        lambda: _set(named("KafkaUser", "service-routing"), "spec.authorization.acls.0.host", 1),
        "host",
    ),
    "postgres: unknown synchronous field": (
        lambda: _set(of("Cluster")[0], "spec.postgresql.synchronous.replicas", 2),
        "replicas",
    ),
    "scaled object: unknown trigger field": (
        lambda: _set(named("ScaledObject", "xinfang-notify"), "spec.triggers.0.lag", "5"),
        "lag",
    ),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_wrong_field_fails_kubeconform(check: Callable[..., Any], case: str) -> None:
    make, field = WRONG[case]
    result = check([make()])
    assert result.returncode != 0, result.stdout
    assert field in result.stdout, result.stdout


def test_a_kind_without_a_schema_fails_rather_than_being_skipped(check: Callable[..., Any]) -> None:
    scheduled = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 0 2 * * *", "cluster": {"name": "xinfang-db"}},
    }
    result = check([scheduled])
    assert result.returncode != 0 and "could not find schema" in result.stdout, result.stdout


def test_the_crd_schemas_are_strict_where_the_crd_does_not_say_otherwise() -> None:
    converted = schemas.crd_schemas()
    assert {"kafka_v1.json", "kafkanodepool_v1.json", "kafkatopic_v1.json", "kafkauser_v1.json"} <= set(converted)
    assert {"cluster_v1.json", "scaledobject_v1alpha1.json", "triggerauthentication_v1alpha1.json"} <= set(converted)
    topic = converted["kafkatopic_v1.json"]["properties"]["spec"]
    assert topic["additionalProperties"] is False
    assert "additionalProperties" not in topic["properties"]["config"], "preserve-unknown-fields stays open"


# --- policies on the parsed YAML --------------------------------------------------------------------------------

SERVICE_INFO = {s: render.service(s) for s in SERVICES}
# Every Deployment: the Kafka services and the console.
SERVERS = (*SERVICES, render.CONSOLE)
SERVER_INFO = {s: render.service(s) for s in SERVERS}


def test_every_topic_of_the_registry_has_its_kafka_topic_with_its_partitions_and_settings() -> None:
    wanted = topics_to_create()
    topics = {d["spec"].get("topicName", d["metadata"]["name"]): d for d in of("KafkaTopic")}
    assert set(topics) == set(wanted)
    for name, spec in wanted.items():
        topic = topics[name]["spec"]
        assert topic["partitions"] == spec.partitions, name
        assert topic["replicas"] == 3, name
        assert int(topic["config"]["min.insync.replicas"]) == 2, name
        for key, value in spec.configs:
            assert str(topic["config"][key]) == value, (name, key)
        assert topics[name]["metadata"]["labels"]["strimzi.io/cluster"] == of("Kafka")[0]["metadata"]["name"]


def test_kafka_has_three_controllers_and_three_brokers_replication_three_and_scram_over_tls() -> None:
    (kafka,) = of("Kafka")
    pools = {tuple(p["spec"]["roles"]): p["spec"]["replicas"] for p in of("KafkaNodePool")}
    assert pools == {("controller",): 3, ("broker",): 3}
    spec = kafka["spec"]["kafka"]
    assert re.fullmatch(r"4\.[23]\.\d+", spec["version"]), "Strimzi (main) runs Kafka 4.2 and 4.3"
    assert spec["config"]["default.replication.factor"] == 3
    assert spec["config"]["min.insync.replicas"] == 2
    assert spec["config"]["allow.everyone.if.no.acl.found"] is False
    assert spec["authorization"]["type"] == "simple"
    for listener in spec["listeners"]:
        assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512", listener["name"]
    bootstrap = render.Renderer(render.load_config()).bootstrap
    tls = next(lst for lst in spec["listeners"] if lst["name"] == "tls")
    assert bootstrap.endswith(f":{tls['port']}")


def test_the_kafka_users_are_the_acl_generators_and_every_principal_has_one() -> None:
    acls_module = sys.modules["acls"]
    cluster = of("Kafka")[0]["metadata"]["name"]
    generated = {u["metadata"]["name"]: u["spec"] for u in acls_module.strimzi_users(cluster)}
    users = {u["metadata"]["name"]: u["spec"] for u in of("KafkaUser")}
    assert set(users) == set(principals()) | {"operator"}
    for name, spec in generated.items():
        assert users[name] == spec, name
    assert "operator" in of("Kafka")[0]["spec"]["kafka"]["authorization"]["superUsers"]


def _acl(user: str, resource: str, name: str, operation: str = "Read") -> bool:
    for rule in named("KafkaUser", user)["spec"]["authorization"]["acls"]:
        r = rule["resource"]
        if r["type"] != resource or operation not in rule["operations"]:
            continue
        if (r["patternType"] == "literal" and r["name"] == name) or (
            r["patternType"] == "prefix" and name.startswith(r["name"])
        ):
            return True
    return False


@pytest.mark.parametrize("service", SERVICES)
def test_every_consumer_group_has_its_acl_and_its_scaled_object_on_every_topic_it_reads(service: str) -> None:
    info = SERVICE_INFO[service]
    assert info.group == f"xinfang-{service}"
    assert info.reads == tuple(t.name for t in CONTRACT_TOPICS if service in t.consumers) and info.reads
    assert _acl(info.principal, "group", info.group)
    scaled = named("ScaledObject", f"xinfang-{service}")["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"xinfang-{service}"}
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {info.group}
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(info.reads)
    for trigger in triggers:
        meta = trigger["metadata"]
        assert _acl(info.principal, "topic", meta["topic"]), meta["topic"]
        assert int(meta["lagThreshold"]) > 0
        assert meta["sasl"] == "scram_sha512" and meta["tls"] == "enable"
        # KEDA 2.20: the two are exclusive.
        assert not (meta.get("allowIdleConsumers") == "true" and meta.get("limitToPartitionsWithLag") == "true")
        auth = named("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
        assert {r["parameter"] for r in auth["secretTargetRef"]} >= {"password", "ca"}
        (user,) = auth["env"]
        assert user["containerName"] == container(deployment(service))["name"]
        assert env_of(deployment(service))[user["name"]]["value"] == info.principal


@pytest.mark.parametrize("service", SERVICES)
def test_replicas_never_exceed_the_partitions_and_never_fall_below_one(service: str) -> None:
    scaled = named("ScaledObject", f"xinfang-{service}")["spec"]
    partitions = topics_to_create()
    fewest = min(partitions[t["metadata"]["topic"]].partitions for t in scaled["triggers"])
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= fewest
    # Every service serves HTTP, and supervision runs the deadline scheduler.
    assert scaled["minReplicaCount"] >= 1
    assert "replicas" not in deployment(service)["spec"], "KEDA's HPA owns the replica count"


@pytest.mark.parametrize("service", SERVERS)
def test_selectors_select_the_pods(service: str) -> None:
    dep = deployment(service)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert matches(dep["spec"]["selector"]["matchLabels"], pod_labels)
    assert matches(named("Service", f"xinfang-{service}")["spec"]["selector"], pod_labels)
    assert matches(named("PodDisruptionBudget", f"xinfang-{service}")["spec"]["selector"]["matchLabels"], pod_labels)
    assert matches(named("NetworkPolicy", f"xinfang-{service}")["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert matches(named("NetworkPolicy", "xinfang-default-deny")["spec"]["podSelector"]["matchLabels"], pod_labels)
    # Each selects this service's pods only.
    others = [d for d in of("Deployment") if d is not dep]
    for other in others:
        other_labels = other["spec"]["template"]["metadata"]["labels"]
        assert not matches(named("Service", f"xinfang-{service}")["spec"]["selector"], other_labels)
        assert not matches(dep["spec"]["selector"]["matchLabels"], other_labels)


def test_every_job_pod_is_under_the_default_deny_and_the_migration_policy() -> None:
    for job in of("Job"):
        pod_labels = job["spec"]["template"]["metadata"]["labels"]
        assert matches(named("NetworkPolicy", "xinfang-default-deny")["spec"]["podSelector"]["matchLabels"], pod_labels)
        assert matches(named("NetworkPolicy", "xinfang-migrate")["spec"]["podSelector"]["matchLabels"], pod_labels)
        for dep in of("Deployment"):
            assert not matches(dep["spec"]["selector"]["matchLabels"], pod_labels), "a Job's pod is no server"


def _ports(c: dict[str, Any]) -> set[int | str]:
    return {p["name"] for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}


@pytest.mark.parametrize("service", SERVERS)
def test_probe_service_and_policy_ports_exist_in_the_container(service: str) -> None:
    c = container(deployment(service))
    assert {p["containerPort"] for p in c["ports"]} == {SERVER_INFO[service].port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in _ports(c), probe
    for port in named("Service", f"xinfang-{service}")["spec"]["ports"]:
        assert port["targetPort"] in _ports(c)
    for rule in named("NetworkPolicy", f"xinfang-{service}")["spec"]["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in _ports(c)


@pytest.mark.parametrize("service", SERVERS)
def test_every_deployment_has_probes_resources_and_a_non_root_read_only_context(service: str) -> None:
    dep = deployment(service)
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = c["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # Above the graceful stop: the preStop pause, uvicorn's 20 s, then the service's own stop.
    assert render.UVICORN_GRACEFUL_S == 20
    floor = render.PRE_STOP_S + render.UVICORN_GRACEFUL_S + render.SERVICE_STOP_S
    assert pod["terminationGracePeriodSeconds"] > floor
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == render.PRE_STOP_S


def test_the_graceful_stop_the_grace_period_is_sized_from_is_the_cli_s() -> None:
    cli = (ROOT / "shared/src/xinfang_shared/cli.py").read_text(encoding="utf-8")
    (graceful,) = re.findall(r"timeout_graceful_shutdown=(\d+)", cli)
    assert int(graceful) == render.UVICORN_GRACEFUL_S


@pytest.mark.parametrize("service", SERVERS)
def test_deployments_serve_and_a_job_per_service_migrates(service: str) -> None:
    assert container(deployment(service))["command"] == [f"xinfang-{service}", "serve"]
    (job,) = [j for j in of("Job") if j["metadata"]["labels"]["app.kubernetes.io/name"] == f"xinfang-{service}"]
    job_container = container(job)
    assert job_container["command"] == [f"xinfang-{service}", "migrate"]
    assert job_container["image"] == container(deployment(service))["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job in RENDERED["migrate"] and deployment(service) in RENDERED["services"]


@pytest.mark.parametrize("service", SERVICES)
def test_secrets_come_by_reference_and_only_to_the_services_that_hold_them(service: str) -> None:
    env = env_of(deployment(service))
    assert env["ENVIRONMENT"]["value"] == "production"
    assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    cls = render.settings_class(service)
    secret_fields = {f for f, info in cls.model_fields.items() if render._is_secret(info.annotation)}
    assert set(render.settings_class("routing").model_fields) >= render.SET_OTHERWISE
    for field in secret_fields - render.NOT_IN_PRODUCTION - render.SET_OTHERWISE:
        assert "secretKeyRef" in env[field.upper()]["valueFrom"], field
    for name, entry in env.items():
        if any(word in name for word in ("KEY", "PASSWORD", "TOKEN", "SECRET")):
            assert "valueFrom" in entry, f"{name} is given as a value"
    personal = {"PERSONAL_DATA_KEY", "PERSONAL_DATA_TRANSPORT_KEY"}
    assert (personal <= set(env)) == (service in ("intake", "routing", "notify"))
    assert ("PERSONAL_DATA_HASH_KEY" in env) == (service == "intake")
    assert ({"SMS_ACCESS_KEY", "SMS_RECEIPT_TOKEN", "SMTP_URL"} <= set(env)) == (service == "notify")
    assert not set(env) & {"CHANNEL_API_KEY", "SUPERVISION_CLOCK"}
    assert env["DATABASE_URL"]["value"].startswith(f"postgresql://{service_role(service)}:$(DATABASE_PASSWORD)@")
    unit_keys = [e for e in container(deployment(service)).get("envFrom", []) if "secretRef" in e]
    assert bool(unit_keys) == (service == "routing")
    # The console's key, so that the service believes the person the console names: required (a pod without it
    # would refuse every console request), the very Secret and key the console itself reads.
    assert env["CONSOLE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "xinfang-console", "key": "CONSOLE_API_KEY"}
    assert env["CONSOLE_API_KEY"] == env_of(deployment(render.CONSOLE))["CONSOLE_API_KEY"]
    assert env["OPERATOR_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "xinfang-operator"
    assert not set(env) & {"SESSION_SECRET", "INTAKE_CHANNEL_KEY"}, "the console's own secrets"


@pytest.mark.parametrize("service", SERVERS)
def test_the_environment_passes_the_services_production_checks(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Deployment's environment, its Secrets filled with real-looking values, is one the service starts with in
    production (which refuses dev keys, a plaintext broker, plain SMTP), read from the environment as in the pod."""
    for name, entry in env_of(deployment(service)).items():
        if "value" in entry:
            value = entry["value"]
        elif name == "SMTP_URL":
            value = "smtps://user:secret@mail.example.gov.cn"
        elif name.endswith("OLD_KEYS"):
            value = '["b2xkLWtleQ=="]'
        else:
            value = f"production-{name.lower()}"
        monkeypatch.setenv(name, value)
    settings = render.settings_class(service)(_env_file=None)
    assert settings.environment == "production"
    assert settings.http_port == SERVER_INFO[service].port
    if service == render.CONSOLE:
        assert settings.cookies_secure is True
        assert settings.console_api_key is not None and settings.intake_channel_key is not None
        return
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.consumer_group == SERVICE_INFO[service].group


def test_postgres_three_instances_synchronous_backed_up_one_role_per_service_schema() -> None:
    (cluster,) = of("Cluster")
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["postgresql"]["synchronous"]["number"] >= 1
    assert spec["backup"]["barmanObjectStore"]["destinationPath"] and spec["backup"]["retentionPolicy"]
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert set(roles) == {service_role(s) for s in SERVERS}
    for s in SERVERS:
        role = roles[service_role(s)]
        assert role["login"] is True and role["passwordSecret"]["name"] == f"xinfang-db-{s}"
        assert not role.get("superuser") and not role.get("createrole")
        sql = spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
        assert f"CREATE SCHEMA {s} AUTHORIZATION {service_role(s)}" in sql
        env = env_of(deployment(s))
        assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"xinfang-db-{s}"
    local = _load("local_database", ROOT / "deploy/local/database.py")
    assert set(local.MAY_CREATE) == set(render.MAY_CREATE), "production's roles as the local stack's"
    assert set(local.DATABASE_USERS) == set(render.DATABASE_USERS) == set(SERVERS)


def test_the_database_takes_every_replica_s_pool_at_the_most_replicas() -> None:
    (cluster,) = of("Cluster")
    allowed = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    needed = 0
    for s in SERVERS:
        pool = render.settings_class(s).model_fields["database_pool_max"].default
        pool = int(env_of(deployment(s)).get("DATABASE_POOL_MAX", {}).get("value", pool))
        scaled = [d for d in of("ScaledObject") if d["metadata"]["name"] == f"xinfang-{s}"]
        replicas = scaled[0]["spec"]["maxReplicaCount"] if scaled else deployment(s)["spec"]["replicas"]
        needed += pool * replicas
    reserve = 50  # a migration per service, operators, superuser_reserved_connections, CloudNativePG's own
    assert needed + reserve <= allowed, f"{needed} pooled connections at the most replicas, {allowed} allowed"


def test_kafka_topic_names_are_kubernetes_names() -> None:
    for topic in of("KafkaTopic"):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", topic["metadata"]["name"])
    assert len({t["metadata"]["name"] for t in of("KafkaTopic")}) == len(of("KafkaTopic"))


def test_every_principal_the_registry_names_has_acls_in_its_user() -> None:
    for rule in acls():
        assert _acl(rule.principal, rule.resource.lower(), rule.name, rule.operation.capitalize()), rule


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(sys, "argv", ["render.py"])
    render.main()
    yield capsys.readouterr().out


def test_one_command_prints_every_manifest(printed: str) -> None:
    docs = [d for d in yaml.safe_load_all(printed) if d]
    assert docs == DOCS


# --- the console ------------------------------------------------------------------------------------------------


def test_the_console_is_a_server_without_kafka() -> None:
    name = f"xinfang-{render.CONSOLE}"
    dep = deployment(render.CONSOLE)
    env = env_of(dep)
    # No lag to scale on: a fixed count, more than one so that a rollout or a lost node keeps the workbench.
    assert not [d for d in of("ScaledObject") + of("TriggerAuthentication") if d["metadata"]["name"].startswith(name)]
    assert dep["spec"]["replicas"] >= 2
    assert named("PodDisruptionBudget", name)["spec"]["maxUnavailable"] < dep["spec"]["replicas"]
    assert f"service-{render.CONSOLE}" not in {u["metadata"]["name"] for u in of("KafkaUser")}
    assert not {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"} & set(env)
    volumes = {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert "kafka-ca" not in volumes and "postgres-ca" in volumes
    egress = named("NetworkPolicy", name)["spec"]["egress"]
    assert render.KAFKA_PORT not in {p["port"] for rule in egress for p in rule["ports"]}
    # Its own role and schema, migrated by its own Job before it serves.
    assert env["DATABASE_URL"]["value"].startswith(f"postgresql://{service_role(render.CONSOLE)}:$(DATABASE_PASSWORD)@")
    assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"xinfang-db-{render.CONSOLE}"
    sql = of("Cluster")[0]["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
    assert f"CREATE SCHEMA console AUTHORIZATION {service_role(render.CONSOLE)}" in sql
    assert named("ServiceAccount", name)["automountServiceAccountToken"] is False


def _service_url(service: str) -> str:
    svc = named("Service", f"xinfang-{service}")
    (port,) = svc["spec"]["ports"]
    return f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{port['port']}"


def test_the_console_calls_every_backend_through_its_in_cluster_service() -> None:
    env = env_of(deployment(render.CONSOLE))
    # The five it calls (notify's notices, stats' dashboard included), whether or not its settings name them yet.
    assert set(render.CONSOLE_BACKENDS) == set(SERVICES)
    for backend in render.CONSOLE_BACKENDS:
        assert env[f"{backend.upper()}_URL"]["value"] == _service_url(backend), backend
    # And every backend URL its settings read (a new one must be wired here).
    fields = render.settings_class(render.CONSOLE).model_fields
    for field in fields:
        if field.endswith("_url") and field.removesuffix("_url") in SERVICES:
            assert env[field.upper()]["value"] == _service_url(field.removesuffix("_url")), field


def test_notify_fetches_report_pdfs_from_stats_inside_the_cluster() -> None:
    assert env_of(deployment("notify"))["STATS_URL"]["value"] == _service_url("stats")
    callers = named("NetworkPolicy", "xinfang-stats")["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": render.selector("xinfang-notify")}} in callers
    egress = named("NetworkPolicy", "xinfang-notify")["spec"]["egress"]
    assert any(rule["to"] == [{"podSelector": {"matchLabels": render.selector("xinfang-stats")}}] for rule in egress)
    # Nobody else calls stats' pods.
    routing = {"podSelector": {"matchLabels": render.selector("xinfang-routing")}}
    assert routing not in callers


def test_the_console_s_secrets_are_references_its_own_and_its_cookies_secure() -> None:
    env = env_of(deployment(render.CONSOLE))
    for name, entry in env.items():
        if any(word in name for word in ("KEY", "PASSWORD", "TOKEN", "SECRET")):
            assert "valueFrom" in entry, f"{name} is given as a value"
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs["SESSION_SECRET"] == {"name": "xinfang-console", "key": "SESSION_SECRET"}
    assert refs["CONSOLE_API_KEY"] == {"name": "xinfang-console", "key": "CONSOLE_API_KEY"}
    # Intake makes the visit channel's key after its migration: until it is in the Secret, reception is closed.
    assert refs["INTAKE_CHANNEL_KEY"] == {"name": "xinfang-console", "key": "INTAKE_CHANNEL_KEY", "optional": True}
    # Never the operator key every service takes: the public-facing console holds a value of its own.
    assert refs["OPERATOR_API_KEY"]["name"] != "xinfang-operator"
    assert not [r for n, r in refs.items() if n != "INTAKE_CHANNEL_KEY" and r.get("optional")]
    assert env["SECURE_COOKIES"]["value"] == "true"
    assert not {"PERSONAL_DATA_KEY", "PERSONAL_DATA_TRANSPORT_KEY", "PERSONAL_DATA_HASH_KEY", "SMS_ACCESS_KEY"} & set(
        env
    )


def _admits(policy: dict[str, Any], pod_labels: dict[str, str], port: int | str) -> bool:
    """Whether a policy's ingress takes `port` from a pod of this namespace with these labels."""
    for rule in policy["spec"]["ingress"]:
        peers = [p for p in rule["from"] if "podSelector" in p and "namespaceSelector" not in p]
        if any(matches(p["podSelector"]["matchLabels"], pod_labels) for p in peers) and port in {
            p["port"] for p in rule["ports"]
        }:
            return True
    return False


def _reaches(policy: dict[str, Any], pod_labels: dict[str, str], port: int) -> bool:
    """Whether a policy's egress lets its pods reach `port` of a pod of this namespace with these labels."""
    for rule in policy["spec"]["egress"]:
        peers = [p for p in rule["to"] if "podSelector" in p and "namespaceSelector" not in p]
        if any(matches(p["podSelector"]["matchLabels"], pod_labels) for p in peers) and port in {
            p["port"] for p in rule["ports"]
        }:
            return True
    return False


@pytest.mark.parametrize("service", SERVICES)
def test_the_network_lets_the_console_reach_each_backend(service: str) -> None:
    console_pod = deployment(render.CONSOLE)["spec"]["template"]["metadata"]["labels"]
    backend = deployment(service)
    backend_pod = backend["spec"]["template"]["metadata"]["labels"]
    (port,) = container(backend)["ports"]
    assert _reaches(named("NetworkPolicy", f"xinfang-{render.CONSOLE}"), backend_pod, port["containerPort"])
    assert _admits(named("NetworkPolicy", f"xinfang-{service}"), console_pod, port["name"])
    # Another pod of ours (a migration Job's) is not let in by that rule.
    job_pod = next(iter(of("Job")))["spec"]["template"]["metadata"]["labels"]
    assert not _admits(named("NetworkPolicy", f"xinfang-{service}"), job_pod, port["name"])
