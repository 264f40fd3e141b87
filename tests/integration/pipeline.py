"""The real upstream pipeline (intake → routing → supervision with the controlled clock), in-process on the real
broker and a private database, for the integration tests of the services downstream of it (notify, stats):
their consumer groups start at the topics' ends (the shared test broker keeps other tests' records), every
schema is migrated, and the three services are built with the settings those tests have in common."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from tests.integration.kafka_tools import consumed_by, start_group_at_end
from xinfang_intake.app import MIGRATIONS as INTAKE_MIGRATIONS
from xinfang_intake.app import create_asgi
from xinfang_intake.settings import IntakeSettings
from xinfang_notify.app import MIGRATIONS as NOTIFY_MIGRATIONS
from xinfang_routing.app import MIGRATIONS as ROUTING_MIGRATIONS
from xinfang_routing.app import create_service as create_routing
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service
from xinfang_stats.app import MIGRATIONS as STATS_MIGRATIONS
from xinfang_supervision.app import MIGRATIONS as SUPERVISION_MIGRATIONS
from xinfang_supervision.app import create_service as create_supervision
from xinfang_supervision.settings import SupervisionSettings

UPSTREAM = ("intake", "routing", "supervision")
MIGRATIONS = {
    "intake": INTAKE_MIGRATIONS,
    "routing": ROUTING_MIGRATIONS,
    "supervision": SUPERVISION_MIGRATIONS,
    "notify": NOTIFY_MIGRATIONS,
    "stats": STATS_MIGRATIONS,
}


def common_settings(database: str, bootstrap: str, operator_key: str) -> dict[str, Any]:
    return {
        "database_url": database,
        "kafka_bootstrap_servers": bootstrap,
        "operator_api_key": SecretStr(operator_key),
        "outbox_poll_interval_s": 0.2,
        "_env_file": None,
    }


async def prepare(database: str, bootstrap: str, prefix: str, services: Iterable[str]) -> dict[str, str]:
    """Each service's consumer group (`<prefix>-<service>`), started at the ends of what it consumes, and its
    schema migrated; answers the groups by service."""
    groups = {name: f"{prefix}-{name}" for name in services}
    for name, group in groups.items():
        await start_group_at_end(bootstrap, group, consumed_by(name))
        await migrate_dsn(database, name, MIGRATIONS[name])
    return groups


def upstream(
    groups: Mapping[str, str],
    common: Mapping[str, Any],
    *,
    channel_key: str,
    unit_keys: Mapping[str, str],
    **supervision: Any,
) -> dict[str, Service]:
    """Intake (the documented FastAPI route, not the ASGI fast path: the tests call it through httpx's ASGI
    transport), routing with the units' keys, and supervision on the controlled clock (`supervision`: more of
    its settings)."""
    intake, _ = create_asgi(
        IntakeSettings(
            kafka_group_id=groups["intake"],
            channel_api_key=SecretStr(channel_key),
            public_rate_limit_per_minute=10**6,
            public_rate_limit_burst=10**6,
            **common,
        ),
        fast_path=False,
    )
    routing = create_routing(
        RoutingSettings(
            kafka_group_id=groups["routing"],
            unit_api_keys={unit: SecretStr(key) for unit, key in unit_keys.items()},
            **common,
        )
    )
    supervision_service = create_supervision(
        SupervisionSettings(
            kafka_group_id=groups["supervision"], supervision_clock="controlled", **supervision, **common
        )
    )
    return {"intake": intake, "routing": routing, "supervision": supervision_service}
