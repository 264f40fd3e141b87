"""Settings of the notify service (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from xinfang_shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    service_name: str = "notify"
    http_port: int = 8004
