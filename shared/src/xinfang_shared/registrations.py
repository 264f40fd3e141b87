"""Reading registrations: matters.registered.v2, whose personal block routing and notify open, and what is left on
the retired matters.registered.v1 from before the upgrade (read to its end, so no matter registered then is lost).

A consumer subscribes to `REGISTERED_TOPICS` with one subscriber and gives `registration_parser` to its
EventBatches: every record becomes a MatterRegisteredV2, opened when the reader holds the transport key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRecord

from .contracts.events import MatterRegistered, MatterRegisteredV2, SealedPersonal
from .contracts.topics import MATTERS_REGISTERED, MATTERS_REGISTERED_V2
from .personal import TransportSeal

REGISTERED_TOPICS = (MATTERS_REGISTERED_V2.name, MATTERS_REGISTERED.name)
# What a registration drained from v1 carries as `sealed`: it was never sealed (its v1 record was in clear).
UNSEALED_V1 = ""


def registration_parser(
    seal: TransportSeal | None, topic: Callable[[str], str]
) -> Callable[[ConsumerRecord[Any, Any]], MatterRegisteredV2]:
    """A record of either registered topic (named in the service's namespace by `topic`) as a v2 event; opened
    when `seal` is given. A block that does not open raises SealError (a ValueError: the record is unreadable)."""
    v1 = topic(MATTERS_REGISTERED.name)

    def parse(record: ConsumerRecord[Any, Any]) -> MatterRegisteredV2:
        if record.topic == v1:
            return from_v1(MatterRegistered.model_validate_json(record.value or b""))
        event = MatterRegisteredV2.model_validate_json(record.value or b"")
        if seal is not None:
            opened = seal.open(event.sealed, matter_id=event.matter_id)
            event.with_opened(SealedPersonal.model_validate_json(opened))
        return event

    return parse


def from_v1(e: MatterRegistered) -> MatterRegisteredV2:
    """A registration an earlier release published on v1, in the v2 form, opened (it was in clear)."""
    clear = e.model_dump(exclude={"tracking_code", "petitioner", "representatives", "related_tracking_code"})
    event = MatterRegisteredV2(**clear, representative_count=len(e.representatives), sealed=UNSEALED_V1)
    return event.with_opened(
        SealedPersonal(
            tracking_code=e.tracking_code,
            petitioner=e.petitioner,
            representatives=e.representatives,
            related_tracking_code=e.related_tracking_code,
        )
    )
