"""Settings of the routing service (environment variables; see shared ServiceSettings for the common ones)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr

from xinfang_shared.settings import PersonalDataSettings

from .categories import DEFAULT_LEXICON
from .rules import DEFAULT_RULES


def _unit_keys_from_environment() -> dict[str, SecretStr]:
    # UNIT_API_KEY_city_5101=... → {"city-5101": ...} (make up writes one per unit to credentials.env)
    prefix = "UNIT_API_KEY_"
    return {
        name[len(prefix) :].replace("_", "-"): SecretStr(value)
        for name, value in os.environ.items()
        if name.startswith(prefix) and value
    }


class RoutingSettings(PersonalDataSettings):
    service_name: str = "routing"
    http_port: int = 8002

    routing_rules_file: Path = DEFAULT_RULES
    category_lexicon_file: Path = DEFAULT_LEXICON
    category_min_confidence: float = 0.5
    unit_api_keys: dict[str, SecretStr] = Field(default_factory=_unit_keys_from_environment)
