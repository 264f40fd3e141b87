"""Settings of the stats service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from pydantic import Field

from xinfang_shared.settings import ServiceSettings


class StatsSettings(ServiceSettings):
    service_name: str = "stats"
    http_port: int = 8005
    surge_check_s: float = Field(default=30.0, gt=0, description="How often the surge watch looks for new hours")
    surge_lateness_s: float = Field(
        default=300.0,
        ge=0,
        description="How long after an hour ends (in event time) its matters may still arrive: routing's category"
        " comes a little after the registration, and registrations wait in intake's outbox while Kafka is away",
    )
    surge_catch_up_days: int = Field(
        default=56, ge=1, le=366, description="How far back a series never checked before is checked from"
    )
