"""Settings of the intake service (environment variables; see shared ServiceSettings for the common ones)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from xinfang_shared.settings import LOCAL_DEV_SECRET, PersonalDataSettings


class IntakeSettings(PersonalDataSettings):
    service_name: str = "intake"
    http_port: int = 8001

    personal_data_hash_key: SecretStr = Field(
        default=SecretStr(LOCAL_DEV_SECRET),
        description="HMAC key of the petitioner match key (same ID number and name, same key, neither stored):"
        " intake alone holds it",
    )

    # The local stack's channel key (make up writes it to .local/credentials.env); registered at start-up
    # as the "local-dev" channel system allowed every channel. Real channel systems get their own keys
    # with `xinfang-intake keys add`.
    channel_api_key: SecretStr | None = None
    console_system: str = Field(
        default="console",
        min_length=1,
        description="The channel system whose key is the staff console's (`xinfang-intake keys add --system console"
        " --channels visit`): a submission with its key alone may name the person who registered it (X-Staff-User,"
        " -Office, -Role: a clerk or head of reception, recorded as received_by); any other key naming a person"
        " is refused with 403.",
    )
    channel_keys_refresh_s: float = Field(
        default=30,
        gt=0,
        le=60,
        description="Seconds an instance keeps its copy of the channel keys before a request reloads it: a key"
        " revoked with `xinfang-intake keys revoke` is refused by every instance at most this long after. At"
        " most a minute; 30 s costs one small query per instance per 30 s.",
    )
    max_message_bytes: int = 256 * 1024
    submitted_at_skew_s: int = 300
    repeat_similarity: float = Field(
        default=0.18,
        gt=0,
        le=1,
        description="Two texts of one petitioner whose Jaccard similarity (shared tokens over all tokens of both,"
        " repeats.py) is at least this are the same matter. Chosen on tests/data/repeats.jsonl: every repeat"
        " there but a one-line follow-up is at 0.188 or above, every different matter long enough to compare but"
        " three template-like letters at 0.172 or below; `python -m tests.unit.repeat_accuracy` prints the error"
        " rates.",
    )
    repeat_min_tokens: int = Field(
        default=12,
        ge=1,
        description="A text with fewer tokens than this (Chinese character bigrams, other words of three letters"
        " or more) is too short to compare and is never a repeat, even of itself: 问题, 投诉, help or"
        " 请领导帮忙解决问题 (10) name no matter, and would match whatever someone else's ID number finds. The"
        " shortest real matter in tests/data/repeats.jsonl, a two-sentence English complaint, has 15.",
    )
    # Kafka channel topics are consumed in batches of up to this many records (one transaction each).
    consume_batch_max: int = 1000
    # A batch is registered in this many concurrent transactions (split by partition).
    consume_lanes: int = 2
    # HTTP submissions arriving together are registered in one transaction of up to this many.
    http_batch_max: int = 200
    # Transactions registering HTTP submissions at once: while some wait on PostgreSQL, requests arriving
    # meanwhile are validated and gathered for the next.
    http_flushers: int = 2
    http_queue_max: int = Field(
        default=4000,
        ge=1,
        description="HTTP submissions that may wait for a registering transaction (those in one not counted);"
        " more are answered 503 with Retry-After at once, not registered, instead of piling up in memory."
        " 4000 = 10 rounds of every flusher's full batch (10 x http_batch_max 200 x http_flushers 2): a burst"
        " the flushers clear in ten transactions each is taken whole; a queue longer than that means PostgreSQL"
        " is not keeping up, and a request further back would wait ten transactions or more for its answer,"
        " which a quick 503 lets the channel system retry later or at another instance. Raise it with"
        " http_batch_max or http_flushers.",
    )

    # The petitioners' public endpoints (GET /v1/matters/{code}, POST /v1/matters/{code}/rating): a token bucket
    # per client address, in this instance's memory (xinfang_shared.ratelimit); answered 429 + Retry-After.
    public_rate_limit_per_minute: float = Field(
        default=60,
        gt=0,
        description="Sustained requests per minute per client address to the public endpoints. A petitioner"
        " checks a matter or two now and then; one a second is far above any person, yet leaves room for the"
        " many petitioners one address can stand for (a village office, a carrier's shared NAT), while one"
        " client cannot load the service. Per instance: a cluster-wide limit belongs to the ingress.",
    )
    public_rate_limit_burst: int = Field(
        default=20,
        ge=1,
        description="Requests a client address may make at once before the per-minute rate applies: a page"
        " load, retries and a family looking several matters up are never refused.",
    )
    public_rate_limit_miss_cost: float = Field(
        default=5,
        ge=1,
        description="Tokens a request answered 404 (no matter has this code: a typo, or a guess) costs in all;"
        " a found matter costs 1. A petitioner gets a few typos in a burst; a client trying codes gets"
        " 60 / 5 = 12 guesses a minute instead of 60 (against 75 random bits that is hopeless).",
    )
