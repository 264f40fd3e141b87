"""Settings of the notify service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from xinfang_shared.settings import PersonalDataSettings

from .channels import SmtpServer

DATA = Path(__file__).with_name("data")


class NotifySettings(PersonalDataSettings):
    service_name: str = "notify"
    http_port: int = 8004

    smtp_url: str = Field(
        default="smtp://127.0.0.1:1025",
        description="smtp://host:port (plain, as the local stack's server; not in production),"
        " smtps://host:port (implicit TLS, port 465 by default) or smtp+starttls://host:port (STARTTLS before"
        " anything else, port 587 by default; a server that does not offer it gets nothing);"
        " user:password@ before the host to log in",
    )
    smtp_from: str = Field(default="xinfang@xfj.sc.gov.example", description="The sender of every e-mail")
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    sms_gateway_url: str = Field(default="http://127.0.0.1:8010", description="The SMS gateway (SendSms API)")
    sms_sign_name: str = Field(default="四川信访", description="The SMS signature registered with the gateway")
    sms_access_key: SecretStr = Field(default=SecretStr("local-dev-only"), description="The gateway's API key")
    sms_receipt_token: SecretStr = Field(
        default=SecretStr("local-dev-only"),
        description="What the gateway sends as Authorization: Bearer with its delivery receipts",
    )
    sms_timeout_s: float = Field(default=10.0, gt=0)
    public_lookup_url: str = Field(
        default="http://127.0.0.1:8001/v1/matters/", description="Where petitioners look a matter up (in notices)"
    )

    # Petitioner SMS wait out quiet hours (Beijing time); urgent notices never do. Equal start and end: none.
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)

    # Sending: concurrent workers per instance, what one claims at a time, how long a claim holds (a worker
    # that dies mid-send releases it when it lapses: the resend carries the same Message-ID / OutId).
    senders: int = Field(default=4, ge=1)
    send_batch: int = Field(default=20, ge=1)
    send_lease_s: float = Field(default=60.0, gt=0)
    send_poll_s: float = Field(default=1.0, gt=0)
    # Per channel, at most this many sends a second (the providers' limits).
    email_per_s: float = Field(default=50.0, gt=0)
    sms_per_s: float = Field(default=20.0, gt=0)
    # A failed send is retried, backing off (with jitter) from `initial` up to `max`, this many times in all.
    send_attempts: int = Field(default=8, ge=1)
    send_backoff_initial_s: float = Field(default=2.0, gt=0)
    send_backoff_max_s: float = Field(default=300.0, gt=0)
    # A notice about a matter notify has not seen registered yet waits for it this long, then fails.
    await_registration_s: float = Field(default=3600.0, gt=0)

    # The monthly report's PDF is fetched from stats (report_fetch.py), with the operator key.
    stats_url: str = Field(default="http://127.0.0.1:8005", description="Stats' API, where reports are fetched")
    report_fetch_timeout_s: float = Field(default=60.0, gt=0)

    notices_file: Path = DATA / "notices.toml"
    contacts_file: Path = DATA / "contacts.toml"

    @model_validator(mode="after")
    def _smtp_encrypted_in_production(self) -> NotifySettings:
        server = SmtpServer.parse(self.smtp_url)  # a malformed URL is refused here, in every environment
        if self.environment == "production" and not server.encrypted:
            raise ValueError(
                "SMTP_URL must be encrypted in production: smtps://host[:465] (implicit TLS) or"
                " smtp+starttls://host[:587] (STARTTLS); plain smtp:// is for the local stack and tests"
            )
        return self
