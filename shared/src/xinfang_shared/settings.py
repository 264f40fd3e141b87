"""Settings every service shares, read from the environment (and `.local/credentials.env` when present)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .kafka_auth import KafkaConnection

# Found by walking up from here, so a service started from any directory reads the local stack's file.
_CREDENTIALS = next(
    (p / ".local" / "credentials.env" for p in Path(__file__).resolve().parents if (p / ".local").is_dir()),
    None,
)

LOCAL_DEV_SECRET = "local-dev-only"  # noqa: S105 - the one value refused outside local mode


class KafkaSettings(BaseSettings):
    """How a Kafka client of ours reaches and authenticates to the brokers: every service, its outbox relay and
    admin client, and the command-line tools (deploy/local/topics.py, the benchmarks) read the same variables."""

    model_config = SettingsConfigDict(
        env_file=_CREDENTIALS,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # A refused setting is named with its reason, never with its value: the values are secrets.
        hide_input_in_errors=True,
    )

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="PLAINTEXT (the local stack's open listener, :9092), SASL_PLAINTEXT (its SCRAM listener, :9094),"
        " SASL_SSL or SSL (production: TLS is required there)",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = Field(
        default=None, description="The principal: service-<service> for a service (make up sets it)"
    )
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM bundle of the CAs the brokers' certificates chain to (default: the system's)"
    )

    @property
    def kafka(self) -> KafkaConnection:
        """What every Kafka client of this process is built from (kafka_auth.py)."""
        return KafkaConnection(
            bootstrap_servers=self.kafka_bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None,
            ssl_cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None,
        )

    @model_validator(mode="after")
    def _sasl_needs_a_principal(self) -> KafkaSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and"
                " KAFKA_SASL_PASSWORD"
            )
        return self


class ServiceSettings(KafkaSettings):
    """Base settings; each service subclasses it with its own name, port and extras."""

    service_name: str = "xinfang"
    # Production unless said otherwise: a deployment that forgets ENVIRONMENT must not run on the dev secrets.
    # `make up` writes ENVIRONMENT=local to .local/credentials.env; the tests set ENVIRONMENT=test.
    environment: Literal["local", "test", "production"] = "production"
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    database_url: str = Field(
        default="postgresql://xinfang:xinfang@127.0.0.1:5432/xinfang",
        description="asyncpg DSN; each service works in its own schema of this database, as its own role"
        " (make up gives each service DATABASE_URL_<SERVICE>, a role that can touch only its schema)",
    )
    database_pool_min: int = 1
    database_pool_max: int = 10
    database_command_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A statement that has not answered in this long is abandoned (TimeoutError): a stuck query"
        " must not hold a consumer or a request for ever",
    )

    kafka_group_id: str | None = Field(
        default=None, description="Consumer group; default xinfang-<service> (all instances of a service share it)"
    )
    topic_prefix: str = Field(
        default="",
        max_length=64,
        pattern=r"^([a-z0-9][a-z0-9._-]*[._-])?$",
        description="A namespace on the broker: every topic this service reads or writes, and its consumer group"
        " (unless KAFKA_GROUP_ID names one), is named with this prefix (`bench-1a2b.matters.registered.v2`), so"
        " a benchmark or a chaos run on a shared broker never touches the topics a `make up` stack reads."
        " Empty: the contract's names.",
    )

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector, e.g. http://127.0.0.1:4318; no export when unset"
    )

    traces_recorded: bool | None = Field(
        default=None, description="Record spans; default: only when OTEL_EXPORTER_OTLP_ENDPOINT is set"
    )

    operator_api_key: SecretStr = SecretStr(LOCAL_DEV_SECRET)
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Addresses (or networks, CIDR) of the reverse proxies in front of this service (intake's"
        " public look-ups; the console's pages, and the console in front of intake), as JSON, e.g."
        ' ["10.0.0.0/8"]. Only a request from one of them has its X-Forwarded-For read (the right-most'
        " address there that is not a trusted proxy is the client); empty: the direct peer is the client, and"
        " X-Forwarded-For, which anyone can write, is ignored.",
    )
    console_api_key: SecretStr | None = Field(
        default=None,
        description="The console's own credential: only with it are X-Staff-* (the person acting) believed (staff.py)",
    )

    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest HTTP request body any route reads (413 beyond it)"
    )

    # A batch consumer's fetch: the broker answers once this many bytes are there or the wait is over. Kafka's own
    # defaults (1 byte, 500 ms) measured best here: gathering 64 KiB for up to 50 ms made every idle consumer
    # (routing's reads hundreds of per-unit partitions) fetch ten times as often, and cost the cluster 20.5 ms of
    # CPU per matter against 15.3 (make bench, e2e, 2026-12-06).
    consume_fetch_min_bytes: int = Field(
        default=1, ge=1, description="Bytes a batch consumer's fetch waits for (Kafka fetch.min.bytes)"
    )
    consume_fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        le=5_000,
        description="The longest a batch consumer's fetch waits for them (Kafka fetch.max.wait.ms); with more than"
        " 1 byte asked for, at light load every hop of a matter waits this long once",
    )

    consume_max_records: int = Field(
        default=1000, ge=1, description="The most records a service's consumer takes in one poll (max.poll.records)"
    )

    # Consumers retry a failing message this many times, backing off, before dead-lettering it.
    consumer_max_attempts: int = 4
    consumer_backoff_initial_s: float = 0.2
    consumer_backoff_max_s: float = 5.0

    # The dead-letter limit (dlq_limit.py): a consumer that would dead-letter more than this share of its last
    # `window` records, or `in_a_row` in a row, halts instead; a halt probes after halt_probe_after_s (doubling
    # up to halt_probe_max_s); instances read each other's halts every halt_poll_s.
    dlq_limit_window: int = Field(default=100, ge=1)
    dlq_limit_max_share: float = Field(default=0.5, gt=0, le=1)
    dlq_limit_in_a_row: int = Field(default=20, ge=1)
    halt_probe_after_s: float = Field(default=30.0, gt=0)
    halt_probe_max_s: float = Field(default=600.0, gt=0)
    halt_poll_s: float = Field(default=2.0, gt=0)

    deadline_rules_file: Path | None = Field(
        default=None,
        description="The statutory deadline rules (TOML) every service reads; default: xinfang_shared's"
        " data/deadline-rules.toml",
    )

    inbox_keep_days: float = Field(
        default=14,
        gt=0,
        description="How long a consumer remembers an event it processed (its inbox record): longer than the"
        " topics keep their records (7 days on the local broker), since no redelivery can come from further back",
    )
    inbox_prune_interval_s: float = Field(default=3600, gt=0, description="How often old inbox records are pruned")

    outbox_batch_size: int = 1000
    outbox_poll_interval_s: float = 1.0
    outbox_shards: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Lock groups the outbox relay splits the keys into: up to this many instances publish at once"
        " (each key still by one at a time, in order); 1 = one relay of the service publishes at a time",
    )

    @property
    def db_schema(self) -> str:
        """The PostgreSQL schema this service owns."""
        return self.service_name

    @property
    def consumer_group(self) -> str:
        """KAFKA_GROUP_ID as given, or xinfang-<service> in this service's namespace (topic_prefix)."""
        return self.kafka_group_id or f"{self.topic_prefix}xinfang-{self.service_name}"

    def topic(self, name: str) -> str:
        """The broker's name of the contract topic `name` in this service's namespace (topic_prefix)."""
        return self.topic_prefix + name

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> ServiceSettings:
        if self.environment == "production":
            for name, value in self.model_dump().items():
                if isinstance(value, SecretStr) and value.get_secret_value() == LOCAL_DEV_SECRET:
                    raise ValueError(f"{name} must be set to a real secret in production")
            if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
                raise ValueError(
                    "KAFKA_SECURITY_PROTOCOL must be SASL_SSL (or SSL) in production: the brokers are reached over"
                    f" TLS, not {self.kafka_security_protocol}"
                )
        return self


class PersonalDataSettings(ServiceSettings):
    """The keys of personal data, held only by the services whose handling needs it: intake (which seals it),
    routing (the handling unit's inbox) and notify (the petitioner's contact). Supervision and stats have no
    such setting, so they can open nothing, whatever they read."""

    # AES-256-GCM key (base64 of 32 bytes) sealing the petitioner's and representatives' data at rest.
    personal_data_key: SecretStr = SecretStr(LOCAL_DEV_SECRET)
    personal_data_transport_key: SecretStr = Field(
        default=SecretStr(LOCAL_DEV_SECRET),
        description="AES-256-GCM key (base64 of 32 bytes) sealing the personal block of matters.registered.v2 on"
        " the bus: intake seals with it, routing and notify open with it; nobody else holds it",
    )
    personal_data_transport_old_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Keys this one replaced (JSON list): blocks sealed before a rotation still open",
    )
