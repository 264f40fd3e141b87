"""Settings of the stats service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from xinfang_shared.settings import ServiceSettings


class StatsSettings(ServiceSettings):
    service_name: str = "stats"
    http_port: int = 8005
