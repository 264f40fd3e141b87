"""The intake service: wiring of its subscribers and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from xinfang_shared.contracts.topics import CONTRACT_TOPICS
from xinfang_shared.service import Service
from xinfang_shared.skeleton import log_receipts

from .settings import IntakeSettings

MIGRATIONS = Path(__file__).with_name("migrations")

settings = IntakeSettings()
service = Service(settings, migrations=MIGRATIONS, title="xinfang intake")
app = service.api

log_receipts(service, [t for t in CONTRACT_TOPICS if "intake" in t.consumers])
