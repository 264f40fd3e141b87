"""Subscribers that only note what a service receives: the stand-in for handlers not yet built.

They read their topics as the service will, log the identifiers of each event (never its payload), and never
acknowledge anything: no offset is committed for events thrown away, so the service, once built, starts
from the beginning of its topics under the same consumer group and misses nothing published meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage

from .contracts.topics import Topic
from .service import Service

log = logging.getLogger(__name__)


def log_receipts(service: Service, topics: list[Topic]) -> None:
    for topic in topics:
        _subscribe(service, topic)


def _subscribe(service: Service, topic: Topic) -> None:
    async def ids_only(message: Any) -> Any:
        return None

    # MANUAL and never acknowledged: nothing is committed (and nothing dead-lettered, since nothing is handled).
    @service.subscriber(topic.name, title=f"{topic.name}:receive", ack_policy=AckPolicy.MANUAL, decoder=ids_only)
    async def receive(_: Any, msg: KafkaMessage) -> None:
        try:
            body = orjson.loads(msg.body)
        except orjson.JSONDecodeError:
            body = None
        found = body if isinstance(body, dict) else {}
        ids = {k: str(found[k]) for k in ("event_id", "matter_id", "external_id") if k in found}
        log.info("received (not handled yet: stand-in)", extra={"topic": topic.name, **ids})
