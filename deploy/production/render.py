"""The production manifests, rendered from the topic registry, the services' settings, static/ and config.yaml.

    uv run --frozen python deploy/production/render.py                    # every manifest, one YAML stream
    uv run --frozen python deploy/production/render.py --part services    # one stage (platform, migrate, services)
    uv run --frozen python deploy/production/render.py --out DIR          # one file per stage into DIR
    uv run --frozen python deploy/production/render.py --validate         # render, then kubeconform -strict

What the registry drives is generated here, so nothing is copied by hand: a KafkaTopic per topic of
`topics_to_create()` (partitions, settings, replication 3); a KafkaUser per principal with its ACLs
(deploy/production/acls.py, the local SCRAM listener's generator); a KEDA trigger per topic a service reads, on
its consumer group (`settings.consumer_group`), its maximum held to the fewest partitions among them; each
service's secrets from the SecretStr fields of its settings class. The console (the staff workbench and the
petitioners' page) is a server like the five but reads no Kafka: no principal, no trigger, a fixed replica count;
it calls the five's in-cluster Services, and they take HTTP from it. Kafka and PostgreSQL are static YAML
(static/), filled with config.yaml's names. See README.md beside this file for how to apply them, in order.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import importlib.util
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from xinfang_shared.contracts.topics import CONTRACT_TOPICS, SERVICES, topics_to_create
from xinfang_shared.db import service_role
from xinfang_shared.settings import ServiceSettings

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "config.yaml"
STATIC = HERE / "static"
PART_OF = "xinfang"
PARTS = ("platform", "migrate", "services")

# Graceful stop, in the order a pod goes through it (shared/src/xinfang_shared/cli.py and service.py): the preStop
# pause while endpoints drop the pod, uvicorn's timeout_graceful_shutdown for requests in flight, then the
# service's stop: consumers and hooks, the outbox relay (15 s at most), the pool (10 s at most). The kubelet kills
# at terminationGracePeriodSeconds: kept above their sum with room to spare.
PRE_STOP_S = 5
UVICORN_GRACEFUL_S = 20
SERVICE_STOP_S = 15 + 10
TERMINATION_GRACE_S = 75

# The console: HTTP only (no Kafka), its own database role; it calls these services' APIs as the signed-in person.
CONSOLE = "console"
CONSOLE_BACKENDS = ("intake", "routing", "supervision", "notify", "stats")
# Who calls whose HTTP API inside the cluster (its <NAME>_URL setting, an egress rule, the callee's ingress rule):
# the console all five as the signed-in person; notify stats, for the PDF of a report it e-mails.
HTTP_CALLS: dict[str, tuple[str, ...]] = {CONSOLE: CONSOLE_BACKENDS, "notify": ("stats",)}
# Every role and schema of the database: the Kafka services and the console (deploy/local/database.py's
# DATABASE_USERS; a test holds them equal).
DATABASE_USERS = (*SERVICES, CONSOLE)

# Stats' rebuild builds into a schema of its own (deploy/local/database.py's MAY_CREATE; a test holds them equal).
MAY_CREATE = frozenset({"stats"})

KAFKA_PORT = 9093  # the Kafka resource's `tls` listener (static/kafka.yaml)
POSTGRES_PORT = 5432
KAFKA_CA_DIR = "/etc/xinfang/kafka-ca"
POSTGRES_CA_DIR = "/etc/xinfang/postgres-ca"

# Where each secret setting comes from: (Secret, key). Field names are the settings' (environment variable in
# upper case). A SecretStr field of a service's settings class that is neither here nor in NOT_IN_PRODUCTION fails
# the render, so a new secret cannot be forgotten.
SECRETS: dict[str, tuple[str, str]] = {
    "operator_api_key": ("xinfang-operator", "OPERATOR_API_KEY"),
    "console_api_key": ("xinfang-console", "CONSOLE_API_KEY"),
    "personal_data_key": ("xinfang-personal-data", "PERSONAL_DATA_KEY"),
    "personal_data_transport_key": ("xinfang-personal-data", "PERSONAL_DATA_TRANSPORT_KEY"),
    "personal_data_transport_old_keys": ("xinfang-personal-data", "PERSONAL_DATA_TRANSPORT_OLD_KEYS"),
    "personal_data_hash_key": ("xinfang-personal-data-hash", "PERSONAL_DATA_HASH_KEY"),
    "sms_access_key": ("xinfang-notify", "SMS_ACCESS_KEY"),
    "sms_receipt_token": ("xinfang-notify", "SMS_RECEIPT_TOKEN"),
    "session_secret": ("xinfang-console", "SESSION_SECRET"),
    "intake_channel_key": ("xinfang-console", "INTAKE_CHANNEL_KEY"),
}
# Keys a Secret may leave out (the setting then keeps its default): the old transport keys exist only during a
# rotation; the console's visit-channel key only once intake has made it (`xinfang-intake keys add`, after intake's
# migration), reception staying closed until then. CONSOLE_API_KEY is required everywhere: the console refuses to
# start without it, and a service without it would refuse every request the console makes.
OPTIONAL_SECRETS = frozenset({"personal_data_transport_old_keys", "intake_channel_key"})
# A service's own source for a setting, before SECRETS. The console's operator key guards only its own (empty)
# consumer routes: a value of its own, so that the public-facing console never holds the key that works as operator
# at every service.
OWN_SECRETS: dict[str, dict[str, tuple[str, str]]] = {
    CONSOLE: {"operator_api_key": ("xinfang-console", "CONSOLE_OPERATOR_API_KEY")},
}
# A secret setting production leaves unset: the local stack's channel key (production's channel systems get theirs
# with `xinfang-intake keys add`).
NOT_IN_PRODUCTION = frozenset({"channel_api_key"})
# Secret settings set otherwise: the Kafka password from the service's KafkaUser Secret, the units' keys whole from
# one Secret (envFrom: UNIT_API_KEY_<unit>, which routing's settings gather).
SET_OTHERWISE = frozenset({"kafka_sasl_password", "unit_api_keys"})
UNIT_API_KEYS = "xinfang-unit-api-keys"
# Settings that are not SecretStr yet carry a credential (user:password@ in the URL): from a Secret as well.
SECRET_STRINGS: dict[str, dict[str, tuple[str, str]]] = {"notify": {"smtp_url": ("xinfang-notify", "SMTP_URL")}}


@dataclass(frozen=True)
class Service:
    """What the manifests need of one service, read from its settings class and the topic registry."""

    name: str
    port: int
    group: str  # its consumer group
    reads: tuple[str, ...]  # the topics its group reads (the registry's consumers)
    secret_fields: tuple[str, ...]  # its settings' SecretStr fields
    unit_keys: bool  # it reads UNIT_API_KEY_<unit> from its environment
    kafka: bool  # it has a Kafka principal (the registry's services; not the console)

    @property
    def principal(self) -> str:
        return f"service-{self.name}"

    @property
    def min_partitions(self) -> int:
        partitions = topics_to_create()
        return min(partitions[t].partitions for t in self.reads)


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"xinfang_{service}.settings")
    cls: type[ServiceSettings] = getattr(module, f"{service.capitalize()}Settings")
    return cls


def _is_secret(annotation: Any) -> bool:
    """SecretStr, or one inside a type (`SecretStr | None`, `list[SecretStr]`, `dict[str, SecretStr]`)."""
    return annotation is SecretStr or "SecretStr" in repr(annotation)


def service(name: str) -> Service:
    cls = settings_class(name)
    # Defaults only (no environment, no validation): the port and the consumer group every deployment gets.
    defaults = cls.model_construct()
    secret_fields = tuple(
        field for field, info in cls.model_fields.items() if _is_secret(info.annotation) and field not in SET_OTHERWISE
    )
    return Service(
        name=name,
        port=int(defaults.http_port),
        group=defaults.consumer_group,
        reads=tuple(t.name for t in CONTRACT_TOPICS if name in t.consumers),
        secret_fields=secret_fields,
        unit_keys="unit_api_keys" in cls.model_fields,
        kafka=name in SERVICES,
    )


def _load_acls() -> Any:
    """deploy/production/acls.py (not a package): its strimzi_users is the one KafkaUser generator."""
    module = sys.modules.get("acls")
    if module is None:
        spec = importlib.util.spec_from_file_location("acls", HERE / "acls.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["acls"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module


def labels(name: str, component: str = "server") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def selector(name: str, component: str = "server") -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def _meta(name: str, namespace: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if extra_labels:
        meta["labels"] = extra_labels
    return meta


def _ns_peer(namespace: str, pods: dict[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": pods}
    return peer


class Renderer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.ns: str = config["namespace"]
        self.kafka: str = config["kafka"]["cluster"]
        self.pg: str = config["postgres"]["cluster"]
        self.services = [service(s) for s in SERVICES]  # the Kafka services
        self.console = service(CONSOLE)
        self.servers = [*self.services, self.console]  # every Deployment

    # --- shared pieces ---------------------------------------------------------------------------------------
    def image(self, svc: Service) -> str:
        return str(self.config["image"]).format(service=svc.name)

    @property
    def bootstrap(self) -> str:
        return f"{self.kafka}-kafka-bootstrap.{self.ns}.svc:{KAFKA_PORT}"

    def url(self, svc: Service) -> str:
        """A service's in-cluster address (its Service)."""
        return f"http://xinfang-{svc.name}.{self.ns}.svc:{svc.port}"

    def env(self, svc: Service) -> list[dict[str, Any]]:
        """The container's environment: production mode, Kafka over TLS as its KafkaUser, its own database role,
        its secrets by reference (never a value here), then config.yaml's extras."""
        role = service_role(svc.name)
        env: list[dict[str, Any]] = [
            {"name": "ENVIRONMENT", "value": "production"},
            {"name": "HTTP_HOST", "value": "0.0.0.0"},  # in a pod: the Service and the probes reach it
            {"name": "HTTP_PORT", "value": str(svc.port)},
            {"name": "LOG_FORMAT", "value": "json"},
        ]
        if svc.kafka:
            env += [
                {"name": "KAFKA_BOOTSTRAP_SERVERS", "value": self.bootstrap},
                {"name": "KAFKA_SECURITY_PROTOCOL", "value": "SASL_SSL"},
                {"name": "KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
                {"name": "KAFKA_SASL_USERNAME", "value": svc.principal},
                # The Secret Strimzi's user operator writes for the KafkaUser (its `password` key).
                _secret_env("KAFKA_SASL_PASSWORD", svc.principal, "password"),
                {"name": "KAFKA_SSL_CAFILE", "value": f"{KAFKA_CA_DIR}/ca.crt"},
            ]
        else:
            # It never connects to Kafka (no broker, no principal), yet the shared settings' production check wants
            # a TLS protocol named: SSL needs no principal.
            env.append({"name": "KAFKA_SECURITY_PROTOCOL", "value": "SSL"})
        env += [
            # The role's password, from the Secret CloudNativePG sets it from; $(...) is expanded by the kubelet.
            _secret_env("DATABASE_PASSWORD", f"xinfang-db-{svc.name}", "password"),
            {
                "name": "DATABASE_URL",
                "value": f"postgresql://{role}:$(DATABASE_PASSWORD)@{self.pg}-rw.{self.ns}.svc:{POSTGRES_PORT}/xinfang"
                f"?sslmode=verify-full&sslrootcert={POSTGRES_CA_DIR}/ca.crt",
            },
        ]
        for field in svc.secret_fields:
            if field in NOT_IN_PRODUCTION:
                continue
            own = OWN_SECRETS.get(svc.name, {})
            if field not in own and field not in SECRETS:
                raise SystemExit(f"{svc.name}'s setting {field} is secret and render.py does not say where it is from")
            secret, key = own.get(field) or SECRETS[field]
            env.append(_secret_env(field.upper(), secret, key, optional=field in OPTIONAL_SECRETS))
        for field, (secret, key) in SECRET_STRINGS.get(svc.name, {}).items():
            env.append(_secret_env(field.upper(), secret, key))
        # The services it calls, through their Services (any replica).
        backends = {b.name: b for b in self.services}
        env += [
            {"name": f"{name.upper()}_URL", "value": self.url(backends[name])} for name in HTTP_CALLS.get(svc.name, ())
        ]
        if svc.name == CONSOLE:
            # Its cookies only over HTTPS (the ingress terminates TLS), said here although production's default
            # says so too.
            env.append({"name": "SECURE_COOKIES", "value": "true"})
        endpoint = (self.config.get("otlp") or {}).get("endpoint")
        if endpoint:
            env.append({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": endpoint})
        for name, value in (self.config["services"][svc.name].get("env") or {}).items():
            env.append({"name": name, "value": str(value)})
        return env

    def pod_spec(self, svc: Service, *, serve: bool) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": svc.name,
            "image": self.image(svc),
            "imagePullPolicy": "IfNotPresent",
            "env": self.env(svc),
            "resources": copy.deepcopy(self.config["services"][svc.name]["resources"]),
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},  # jieba's cache, temporary files
                *([{"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True}] if svc.kafka else []),
                {"name": "postgres-ca", "mountPath": POSTGRES_CA_DIR, "readOnly": True},
            ],
        }
        if svc.unit_keys:
            container["envFrom"] = [{"secretRef": {"name": UNIT_API_KEYS}}]
        if serve:
            container["command"] = [f"xinfang-{svc.name}", "serve"]
            container["ports"] = [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}]
            # Liveness: the process loop answers (never Kafka or PostgreSQL: an outage must not restart every pod).
            # Readiness: the broker and the database answer. Startup: time to connect before liveness counts.
            container["startupProbe"] = _probe("/health/live", period=2, failures=60)
            container["readinessProbe"] = _probe("/health/ready", period=5, failures=3)
            container["livenessProbe"] = _probe("/health/live", period=10, failures=3)
            container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_S}}}
        else:
            container["command"] = [f"xinfang-{svc.name}", "migrate"]
        spec: dict[str, Any] = {
            "serviceAccountName": f"xinfang-{svc.name}",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,  # the image's xinfang user (deploy/docker/Dockerfile)
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                # The CAs the brokers' and the database's certificates chain to (Secrets the operators write).
                *([_ca_volume("kafka-ca", f"{self.kafka}-cluster-ca-cert")] if svc.kafka else []),
                _ca_volume("postgres-ca", f"{self.pg}-ca"),
            ],
        }
        if serve:
            spec["terminationGracePeriodSeconds"] = TERMINATION_GRACE_S
            spec["topologySpreadConstraints"] = [
                {
                    "maxSkew": 1,
                    "topologyKey": key,
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector(f"xinfang-{svc.name}")},
                }
                for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
            ]
        else:
            spec["restartPolicy"] = "Never"
        return spec

    # --- platform: Kafka, topics, users, PostgreSQL ----------------------------------------------------------
    def kafka_cluster(self) -> list[dict[str, Any]]:
        docs = _static("kafka.yaml")
        for doc in docs:
            doc["metadata"]["namespace"] = self.ns
            if doc["kind"] == "Kafka":
                doc["metadata"]["name"] = self.kafka
                for listener in doc["spec"]["kafka"]["listeners"]:
                    if listener["name"] == "tls":
                        listener["networkPolicyPeers"] = [
                            {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}},
                            _ns_peer(self.config["namespaces"]["keda"]),
                            _ns_peer(self.config["namespaces"]["monitoring"]),
                        ]
            else:
                doc["metadata"]["labels"]["strimzi.io/cluster"] = self.kafka
        return docs

    def kafka_topics(self) -> list[dict[str, Any]]:
        docs = []
        for name, spec in topics_to_create().items():
            meta = _meta(_k8s_name(name), self.ns, {"strimzi.io/cluster": self.kafka})
            topic: dict[str, Any] = {"partitions": spec.partitions, "replicas": 3}
            if meta["name"] != name:
                topic["topicName"] = name
            topic["config"] = {"min.insync.replicas": 2, **dict(spec.configs)}
            docs.append({"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": meta, "spec": topic})
        return docs

    def kafka_users(self) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = _load_acls().strimzi_users(self.kafka)
        for user in users:
            user["metadata"]["namespace"] = self.ns
        # The operators' principal: a super user (static/kafka.yaml), so no ACLs; xinfang-ops and kafka-acls.sh use it.
        users.append(
            {
                "apiVersion": "kafka.strimzi.io/v1",
                "kind": "KafkaUser",
                "metadata": _meta("operator", self.ns, {"strimzi.io/cluster": self.kafka}),
                "spec": {"authentication": {"type": "scram-sha-512"}},
            }
        )
        return users

    def postgres(self) -> list[dict[str, Any]]:
        (cluster,) = _static("postgres.yaml")
        cluster["metadata"]["name"] = self.pg
        cluster["metadata"]["namespace"] = self.ns
        spec = cluster["spec"]
        store = spec["backup"]["barmanObjectStore"]
        store["destinationPath"] = self.config["postgres"]["backup_destination"]
        store["endpointURL"] = self.config["postgres"]["backup_endpoint"]
        # As xinfang_shared.db.ensure_service_role: each role owns its schema and has no right on another's. The
        # roles are made here without login; CloudNativePG's managed roles then give each LOGIN and its password.
        sql = []
        for s in DATABASE_USERS:
            role = service_role(s)
            sql += [
                f"CREATE ROLE {role} NOLOGIN",
                f"CREATE SCHEMA {s} AUTHORIZATION {role}",
                f"GRANT CREATE ON DATABASE xinfang TO {role}"
                if s in MAY_CREATE
                else f"REVOKE CREATE ON DATABASE xinfang FROM {role}",
            ]
        spec["bootstrap"]["initdb"]["postInitApplicationSQL"] = sql
        spec["managed"]["roles"] = [
            {
                "name": service_role(s),
                "ensure": "present",
                "login": True,
                "inherit": True,
                "connectionLimit": -1,
                "passwordSecret": {"name": f"xinfang-db-{s}"},
                "comment": f"the {s} service: owns schema {s}, nothing else",
            }
            for s in DATABASE_USERS
        ]
        return [cluster]

    def postgres_network_policy(self) -> dict[str, Any]:
        """Who may reach the PostgreSQL instances: each other (replication), the operator, our services and their
        migrations, Prometheus (the instances' exporter)."""
        ns = self.config["namespaces"]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(f"{self.pg}-ingress", self.ns),
            "spec": {
                "podSelector": {"matchLabels": {"cnpg.io/cluster": self.pg}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": self.pg}}}]},
                    {"from": [_ns_peer(ns["cnpg"])], "ports": [_port(8000), _port(POSTGRES_PORT)]},
                    {
                        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}}],
                        "ports": [_port(POSTGRES_PORT)],
                    },
                    {"from": [_ns_peer(ns["monitoring"])], "ports": [_port(9187)]},
                ],
            },
        }

    def platform(self) -> list[dict[str, Any]]:
        return [
            *self.kafka_cluster(),
            *self.kafka_topics(),
            *self.kafka_users(),
            *self.postgres(),
            self.postgres_network_policy(),
            *(self.service_account(s) for s in self.servers),
            self.default_deny(),
            self.migrate_network_policy(),
        ]

    # --- migrations --------------------------------------------------------------------------------------------
    def migrate_job(self, svc: Service) -> dict[str, Any]:
        # Named after the image: a new release is a new Job (a Job's template cannot change), the same release
        # re-applied is the same Job.
        digest = hashlib.sha256(self.image(svc).encode()).hexdigest()[:8]
        name = f"xinfang-{svc.name}"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": _meta(f"{name}-migrate-{digest}", self.ns, labels(name, "migrate")),
            "spec": {
                "backoffLimit": 3,
                "activeDeadlineSeconds": 900,
                "ttlSecondsAfterFinished": 7 * 24 * 3600,
                "template": {
                    "metadata": {"labels": labels(name, "migrate")},
                    "spec": self.pod_spec(svc, serve=False),
                },
            },
        }

    def migrate(self) -> list[dict[str, Any]]:
        return [self.migrate_job(s) for s in self.servers]

    # --- services ---------------------------------------------------------------------------------------------
    def service_account(self, svc: Service) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(f"xinfang-{svc.name}", self.ns, labels(f"xinfang-{svc.name}")),
            "automountServiceAccountToken": False,
        }

    def deployment(self, svc: Service) -> dict[str, Any]:
        name = f"xinfang-{svc.name}"
        # No `replicas` for a Kafka service: KEDA's HorizontalPodAutoscaler owns it (a re-apply must not reset a
        # scaled deployment). The console has no lag to scale on: config.yaml's count (its state is in PostgreSQL,
        # so any replica serves any session).
        fixed = {} if svc.kafka else {"replicas": int(self.config["services"][svc.name]["replicas"])}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(name, self.ns, labels(name)),
            "spec": {
                **fixed,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector(name)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": labels(name)}, "spec": self.pod_spec(svc, serve=True)},
            },
        }

    def k8s_service(self, svc: Service) -> dict[str, Any]:
        name = f"xinfang-{svc.name}"
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, self.ns, labels(name)),
            "spec": {
                "type": "ClusterIP",
                "selector": selector(name),
                "ports": [{"name": "http", "port": svc.port, "targetPort": "http", "protocol": "TCP"}],
            },
        }

    def pdb(self, svc: Service) -> dict[str, Any]:
        name = f"xinfang-{svc.name}"
        return {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name, self.ns, labels(name)),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector(name)},
                # A pod that is not ready serves nothing: draining a node must not wait on it.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        }

    def default_deny(self) -> dict[str, Any]:
        """Nothing in or out of our pods but what the policies below allow."""
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("xinfang-default-deny", self.ns),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}},
                "policyTypes": ["Ingress", "Egress"],
            },
        }

    def _egress_common(self) -> list[dict[str, Any]]:
        return [
            {  # DNS
                "to": [_ns_peer("kube-system", {"k8s-app": "kube-dns"})],
                "ports": [_port(53, "UDP"), _port(53)],
            },
            {
                "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": self.pg}}}],
                "ports": [_port(POSTGRES_PORT)],
            },
        ]

    def migrate_network_policy(self) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("xinfang-migrate", self.ns),
            "spec": {
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/component": "migrate"}
                },
                "policyTypes": ["Egress"],
                "egress": self._egress_common(),
            },
        }

    def network_policy(self, svc: Service) -> dict[str, Any]:
        name = f"xinfang-{svc.name}"
        ns = self.config["namespaces"]
        egress = self._egress_common()
        if svc.kafka:
            egress.append(
                {
                    "to": [
                        {
                            "podSelector": {
                                "matchLabels": {"strimzi.io/cluster": self.kafka, "strimzi.io/broker-role": "true"}
                            }
                        }
                    ],
                    "ports": [_port(KAFKA_PORT)],
                }
            )
        # The APIs it calls: each service's pods on their port (the policy sees the pod behind the Service).
        egress += [
            {"to": [{"podSelector": {"matchLabels": selector(f"xinfang-{b.name}")}}], "ports": [_port(b.port)]}
            for b in self.services
            if b.name in HTTP_CALLS.get(svc.name, ())
        ]
        # HTTP from the ingress controller (clients, units, operators) and Prometheus (/metrics); the kubelet's
        # probes are not subject to NetworkPolicies. A service called inside the cluster takes it from its callers.
        peers = [_ns_peer(ns["ingress"]), _ns_peer(ns["monitoring"])]
        peers += [
            {"podSelector": {"matchLabels": selector(f"xinfang-{caller}")}}
            for caller, callees in HTTP_CALLS.items()
            if svc.name in callees
        ]
        otlp = self.config.get("otlp") or {}
        if otlp.get("endpoint"):
            egress.append({"to": [_ns_peer(otlp["namespace"])], "ports": [_port(int(otlp["port"]))]})
        outside = self.config["services"][svc.name].get("egress_ports") or []
        if outside:
            egress.append(
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                    "ports": [_port(int(p)) for p in outside],
                }
            )
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(name, self.ns, labels(name)),
            "spec": {
                "podSelector": {"matchLabels": selector(name)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": peers, "ports": [_port("http")]}],
                "egress": egress,
            },
        }

    def trigger_authentication(self, svc: Service) -> dict[str, Any]:
        name = f"xinfang-{svc.name}"
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": _meta(f"{name}-kafka", self.ns, labels(name)),
            "spec": {
                # KEDA reads the lag as the service's own principal (READ on its group and its topics): the
                # username from the Deployment's environment, the password and the cluster CA from their Secrets.
                "env": [{"parameter": "username", "name": "KAFKA_SASL_USERNAME", "containerName": svc.name}],
                "secretTargetRef": [
                    {"parameter": "password", "name": svc.principal, "key": "password"},
                    {"parameter": "ca", "name": f"{self.kafka}-cluster-ca-cert", "key": "ca.crt"},
                ],
            },
        }

    def scaled_object(self, svc: Service) -> dict[str, Any]:
        name = f"xinfang-{svc.name}"
        conf = self.config["services"][svc.name]
        # Every service serves HTTP, and supervision's scheduler runs in its instances: never below one.
        low = max(1, int(conf["min_replicas"]))
        # More replicas than a topic has partitions would sit idle on it: held to the fewest partitions it reads.
        high = max(low, min(int(conf["max_replicas"]), svc.min_partitions))
        triggers = [
            {
                "type": "kafka",
                "metadata": {
                    "bootstrapServers": self.bootstrap,
                    "consumerGroup": svc.group,
                    "topic": topic,
                    "lagThreshold": str(conf["lag_threshold"]),
                    # A new group reads from the earliest offset (Service.subscriber), so its lag counts from there.
                    "offsetResetPolicy": "earliest",
                    # KEDA 2.20: exclusive with limitToPartitionsWithLag, which is left at its default (false).
                    "allowIdleConsumers": "false",
                    "sasl": "scram_sha512",
                    "tls": "enable",
                },
                "authenticationRef": {"name": f"{name}-kafka"},
            }
            for topic in svc.reads
        ]
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": _meta(name, self.ns, labels(name)),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicaCount": low,
                "maxReplicaCount": high,
                "pollingInterval": 15,
                "cooldownPeriod": 300,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            # Up at once in a surge; down slowly (a rebalance costs every consumer a pause).
                            "scaleUp": {
                                "stabilizationWindowSeconds": 0,
                                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 30}],
                            },
                            "scaleDown": {
                                "stabilizationWindowSeconds": 300,
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                            },
                        }
                    }
                },
                "triggers": triggers,
            },
        }

    def services_part(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for svc in self.servers:
            docs += [self.deployment(svc), self.k8s_service(svc), self.pdb(svc), self.network_policy(svc)]
            if svc.kafka:
                docs += [self.trigger_authentication(svc), self.scaled_object(svc)]
        return docs

    def render(self, parts: Iterable[str] = PARTS) -> dict[str, list[dict[str, Any]]]:
        makers = {"platform": self.platform, "migrate": self.migrate, "services": self.services_part}
        return {part: makers[part]() for part in parts}


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _ca_volume(name: str, secret: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _port(port: int | str, protocol: str = "TCP") -> dict[str, Any]:
    return {"port": port, "protocol": protocol}


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _k8s_name(topic: str) -> str:
    """A KafkaTopic's resource name: the topic's own when Kubernetes allows it (spec.topicName otherwise)."""
    if _DNS_SUBDOMAIN.match(topic):
        return topic
    return re.sub(r"[^a-z0-9.-]", "-", topic.lower()).strip("-.")[:253]


def _static(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((STATIC / name).read_text(encoding="utf-8")) if d]


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return config


def render(config: dict[str, Any] | None = None, parts: Iterable[str] = PARTS) -> dict[str, list[dict[str, Any]]]:
    """The manifests of each part (platform, migrate, services), as parsed YAML."""
    return Renderer(config or load_config()).render(parts)


def dump(docs: Iterable[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=120) for d in docs)


def write(out: Path, rendered: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """One file per part, numbered in the order they are applied."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, part in enumerate(PARTS, 1):
        if part in rendered:
            path = out / f"{index}-{part}.yaml"
            path.write_text(dump(rendered[part]), encoding="utf-8")
            paths.append(path)
    return paths


def validate(rendered: dict[str, list[dict[str, Any]]]) -> int:
    """kubeconform -strict over the rendered manifests, with the schemas of schemas.py; its exit status."""
    spec = importlib.util.spec_from_file_location("production_schemas", HERE / "schemas.py")
    assert spec and spec.loader
    schemas = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schemas)
    with tempfile.TemporaryDirectory() as tmp:
        manifests = Path(tmp) / "manifests"
        write(manifests, rendered)
        result = schemas.kubeconform(manifests, schemas.write(Path(tmp) / "schemas"))
    sys.stderr.write(result.stdout + result.stderr)
    return int(result.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="the installation's values (default: config.yaml)")
    parser.add_argument("--part", choices=PARTS, action="append", help="only this stage (repeatable)")
    parser.add_argument("--out", type=Path, help="write <n>-<part>.yaml files into this directory")
    parser.add_argument("--validate", action="store_true", help="check every manifest with kubeconform -strict")
    args = parser.parse_args()
    rendered = render(load_config(args.config), args.part or PARTS)
    if args.validate:
        sys.exit(validate(rendered))
    if args.out:
        for path in write(args.out, rendered):
            print(path, file=sys.stderr)
        return
    sys.stdout.write(dump(d for part in rendered.values() for d in part))


if __name__ == "__main__":
    main()
