"""Settings of the console (environment variables, see shared ServiceSettings)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from xinfang_shared.settings import LOCAL_DEV_SECRET, ServiceSettings


class ConsoleSettings(ServiceSettings):
    service_name: str = "console"
    http_port: int = 8006
    session_secret: SecretStr = Field(
        default=SecretStr(LOCAL_DEV_SECRET), description="Signs the session cookies (HMAC-SHA256)"
    )
    session_idle_s: int = Field(default=30 * 60, ge=60, description="A session unused this long ends")
    session_max_s: int = Field(default=10 * 3600, ge=60, description="A session ends this long after sign-in")
    secure_cookies: bool | None = Field(
        default=None, description="Cookies only over HTTPS; default: yes, except in local and test environments"
    )
    signin_window_s: int = Field(default=15 * 60, ge=1, description="The window the sign-in limits count in")
    signin_max_per_account: int = Field(default=5, ge=1, description="Failed sign-ins of one account per window")
    signin_max_per_address: int = Field(default=30, ge=1, description="Failed sign-ins from one address per window")
    routing_url: str = "http://127.0.0.1:8002"
    supervision_url: str = "http://127.0.0.1:8003"
    intake_url: str = "http://127.0.0.1:8001"
    notify_url: str = "http://127.0.0.1:8004"
    stats_url: str = "http://127.0.0.1:8005"
    backend_timeout_s: float = Field(default=10.0, gt=0)
    intake_channel_key: SecretStr | None = Field(
        default=None,
        description="Intake's key for the visit channel, made for the console's system (`xinfang-intake keys add"
        " --system console --channels visit`: intake believes who registers a visit from that key alone):"
        " reception registers walk-in visits with it; without it, reception is closed",
    )
    public_rate_limit_per_minute: float = Field(default=30.0, gt=0, description="/track look-ups per address")
    public_rate_limit_burst: int = Field(default=10, ge=1)

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.environment not in ("local", "test")

    @model_validator(mode="after")
    def _needs_the_console_key(self) -> ConsoleSettings:
        if self.console_api_key is None:
            raise ValueError("CONSOLE_API_KEY is required: the console acts for people with it (shared/staff.py)")
        return self
