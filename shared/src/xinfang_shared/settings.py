"""Settings every service shares, read from the environment (and `.local/credentials.env` when present)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Found by walking up from here, so a service started from any directory reads the local stack's file.
_CREDENTIALS = next(
    (p / ".local" / "credentials.env" for p in Path(__file__).resolve().parents if (p / ".local").is_dir()),
    None,
)

LOCAL_DEV_SECRET = "local-dev-only"  # noqa: S105 - the one value refused outside local mode


class ServiceSettings(BaseSettings):
    """Base settings; each service subclasses it with its own name, port and extras."""

    model_config = SettingsConfigDict(
        env_file=_CREDENTIALS, env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    service_name: str = "xinfang"
    # Production unless said otherwise: a deployment that forgets ENVIRONMENT must not run on the dev secrets.
    # `make up` writes ENVIRONMENT=local to .local/credentials.env; the tests set ENVIRONMENT=test.
    environment: Literal["local", "test", "production"] = "production"
    http_host: str = "127.0.0.1"
    http_port: int = 8000

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = Field(
        default="postgresql://xinfang:xinfang@127.0.0.1:5432/xinfang",
        description="asyncpg DSN; each service works in its own schema of this database",
    )
    database_pool_min: int = 1
    database_pool_max: int = 10

    kafka_group_id: str | None = Field(
        default=None, description="Consumer group; default xinfang-<service> (all instances of a service share it)"
    )
    topic_prefix: str = Field(
        default="",
        max_length=64,
        pattern=r"^([a-z0-9][a-z0-9._-]*[._-])?$",
        description="A namespace on the broker: every topic this service reads or writes, and its consumer group"
        " (unless KAFKA_GROUP_ID names one), is named with this prefix (`bench-1a2b.matters.registered.v1`), so"
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
    # AES-256-GCM key (base64 of 32 bytes) sealing ID numbers, phones and other personal data at rest, and
    # the HMAC key of the petitioner match key (same person, same key, without storing the ID number).
    personal_data_key: SecretStr = SecretStr(LOCAL_DEV_SECRET)
    personal_data_hash_key: SecretStr = SecretStr(LOCAL_DEV_SECRET)

    max_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest HTTP request body any route reads (413 beyond it)"
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
        return self
