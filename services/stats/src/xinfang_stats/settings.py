"""Settings of the stats service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from pydantic import Field

from xinfang_shared.settings import ServiceSettings


class StatsSettings(ServiceSettings):
    service_name: str = "stats"
    http_port: int = 8005
    surge_check_s: float = Field(
        default=10.0, gt=0, description="How often the surge watch checks the window ends that became due"
    )
    surge_lateness_s: float = Field(
        default=20.0,
        ge=0,
        le=60,
        description="How long after a window ends (in event time) stragglers are waited for before it is judged:"
        " routing's category comes a little after the registration. Bounded: the 50th matter within an hour must"
        " raise its alert within 2 minutes (the next minute boundary, this wait, and one round)",
    )
    surge_catch_up_days: int = Field(
        default=56, ge=1, le=366, description="How far back a series never checked before is checked from"
    )
    report_poll_s: float = Field(
        default=30.0, gt=0, description="How often the report worker looks for reports to make and the monthly one"
    )
    report_lease_s: float = Field(
        default=600.0, gt=0, description="How long a report being made is its worker's; after that another takes it"
    )
    massive_visit_headcount: int = Field(
        default=50, ge=5, description="From this headcount a visit is a massive one in the reports (routing's rule)"
    )
