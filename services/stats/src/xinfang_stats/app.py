"""The stats service: wiring of its subscribers and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from xinfang_shared.contracts.topics import CONTRACT_TOPICS
from xinfang_shared.service import Service
from xinfang_shared.skeleton import log_receipts

from .settings import StatsSettings

MIGRATIONS = Path(__file__).with_name("migrations")

settings = StatsSettings()
service = Service(settings, migrations=MIGRATIONS, title="xinfang stats")
app = service.api

log_receipts(service, [t for t in CONTRACT_TOPICS if "stats" in t.consumers])
