"""The notify service: wiring of its subscribers and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from xinfang_shared.contracts.topics import CONTRACT_TOPICS
from xinfang_shared.service import Service
from xinfang_shared.skeleton import log_receipts

from .settings import NotifySettings

MIGRATIONS = Path(__file__).with_name("migrations")


def create_service(settings: NotifySettings) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang notify")
    log_receipts(service, [t for t in CONTRACT_TOPICS if "notify" in t.consumers])
    return service


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(NotifySettings()).api
