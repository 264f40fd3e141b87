"""Settings of the routing service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from xinfang_shared.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    http_port: int = 8002
