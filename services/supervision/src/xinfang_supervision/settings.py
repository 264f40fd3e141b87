"""Settings of the supervision service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from xinfang_shared.settings import ServiceSettings


class SupervisionSettings(ServiceSettings):
    service_name: str = "supervision"
    http_port: int = 8003
