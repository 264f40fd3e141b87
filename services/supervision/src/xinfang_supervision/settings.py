"""Settings of the supervision service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from xinfang_shared.settings import ServiceSettings


class SupervisionSettings(ServiceSettings):
    service_name: str = "supervision"
    http_port: int = 8003

    supervision_clock: Literal["real", "controlled"] = Field(
        default="real",
        description="controlled: POST /v1/admin/clock/advance moves supervision's time (tests; CONTRACT.md)",
    )
    # Every instance runs the scheduler; a pass claims at most this many deadlines per transaction.
    scheduler_interval_s: float = 1.0
    scheduler_batch_size: int = 500
    # Concurrent batches per pass in each instance.
    scheduler_workers: int = 2

    @model_validator(mode="after")
    def _no_controlled_clock_in_production(self) -> SupervisionSettings:
        if self.environment == "production" and self.supervision_clock == "controlled":
            raise ValueError("SUPERVISION_CLOCK=controlled is for tests: refused with ENVIRONMENT=production")
        return self
