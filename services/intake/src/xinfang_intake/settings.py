"""Settings of the intake service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from xinfang_shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    http_port: int = 8001
