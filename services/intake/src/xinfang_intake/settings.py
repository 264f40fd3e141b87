"""Settings of the intake service (environment variables; see shared ServiceSettings for the common ones)."""

from __future__ import annotations

from pydantic import SecretStr

from xinfang_shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001

    # The local stack's channel key (make up writes it to .local/credentials.env); registered at start-up
    # as the "local-dev" channel system allowed every channel. Real channel systems get their own keys
    # with `xinfang-intake keys add`.
    channel_api_key: SecretStr | None = None
    max_message_bytes: int = 256 * 1024
    submitted_at_skew_s: int = 300
    review_window_days: int = 30
    # Two texts from one petitioner at or above this similarity are "the same matter" (see repeats.py).
    repeat_similarity: float = 0.35
    # Kafka channel topics are consumed in batches of up to this many records (one transaction each).
    consume_batch_max: int = 1000
    # A batch is registered in this many concurrent transactions (split by partition).
    consume_lanes: int = 2
    # HTTP submissions arriving together are registered in one transaction of up to this many.
    http_batch_max: int = 200
    # Transactions registering HTTP submissions at once: while some wait on PostgreSQL, requests arriving
    # meanwhile are validated and gathered for the next.
    http_flushers: int = 2
