"""Subscribers that only acknowledge what a service receives: the stand-in for handlers not yet built.

Each one validates the message against its contract model (so a malformed one is dead-lettered) and logs
its identifiers, never its payload.
"""

from __future__ import annotations

import logging
from typing import Any

from .contracts.topics import Topic
from .service import Service

log = logging.getLogger(__name__)


def log_receipts(service: Service, topics: list[Topic]) -> None:
    for topic in topics:
        _subscribe(service, topic)


def _subscribe(service: Service, topic: Topic) -> None:
    model = topic.model

    @service.subscriber(topic.name, title=f"{topic.name}:receive")
    async def receive(body: dict[str, Any]) -> None:
        event = model.model_validate(body)
        ids = {k: str(v) for k, v in event if k in ("event_id", "matter_id", "external_id")}
        log.info("received", extra={"topic": topic.name, **ids})
