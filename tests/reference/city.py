"""A reference city system: how a city integrates with the bureau over Kafka.

It reads only its own inbox topic (units.<unit>.inbox.v1), and for each matter transferred to it answers on its
own units.<unit>.feedback.v1: received, then accepted, then concluded with an opinion (or objected, for matters it
was told to object to). Run it against the local stack, as the unit's principal on the SCRAM listener (its
password is in .local/credentials.env; the broker's ACLs let it read and write nothing else):

    uv run --frozen python -m tests.reference.city city-5101
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from xinfang_shared.contracts.events import Opinion, UnitFeedback, UnitInboxMessage
from xinfang_shared.contracts.reference import FeedbackAction, OpinionResult
from xinfang_shared.contracts.topics import unit_feedback_topic, unit_inbox_topic
from xinfang_shared.kafka_auth import KafkaConnection

Decide = Callable[[UnitInboxMessage], list[FeedbackAction]]


def handle_everything(message: UnitInboxMessage) -> list[FeedbackAction]:
    if message.type == "supervision-order":
        return []
    return [FeedbackAction.RECEIVED, FeedbackAction.ACCEPTED, FeedbackAction.CONCLUDED]


class ReferenceCity:
    def __init__(
        self, unit: str, kafka: str | KafkaConnection, decide: Decide = handle_everything, *, group: str | None = None
    ):
        self.unit = unit
        self.kafka = KafkaConnection(kafka) if isinstance(kafka, str) else kafka
        self.decide = decide
        self.group = group or f"{unit}-system"
        self.seen: list[UnitInboxMessage] = []

    async def run(self, stop: asyncio.Event | None = None) -> None:
        consumer = AIOKafkaConsumer(
            unit_inbox_topic(self.unit),
            **self.kafka.aiokafka(),
            group_id=self.group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        producer = AIOKafkaProducer(**self.kafka.aiokafka(), acks="all")
        await consumer.start()
        await producer.start()
        try:
            while stop is None or not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        message = UnitInboxMessage.model_validate_json(record.value or b"")
                        self.seen.append(message)
                        for action in self.decide(message):
                            feedback = self._feedback(message, action)
                            await producer.send_and_wait(
                                unit_feedback_topic(self.unit),
                                feedback.model_dump_json().encode(),
                                key=str(message.matter_id).encode(),
                            )
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()

    def _feedback(self, message: UnitInboxMessage, action: FeedbackAction) -> UnitFeedback:
        extra: dict[str, object] = {}
        if action == FeedbackAction.CONCLUDED:
            extra["opinion"] = Opinion(result=OpinionResult.SUPPORT, text=f"{self.unit} 已核实并处理。")
        if action in (FeedbackAction.OBJECTED, FeedbackAction.NOT_ACCEPTED):
            extra["reason"] = "不属于本单位职责范围"
        return UnitFeedback(matter_id=message.matter_id, unit=self.unit, action=action, at=datetime.now(UTC), **extra)


if __name__ == "__main__":
    import dotenv

    from xinfang_shared.settings import KafkaSettings

    unit = sys.argv[1] if len(sys.argv) > 1 else "city-5101"
    credentials = KafkaSettings.model_config.get("env_file")  # .local/credentials.env, as the services find it
    principal = f"unit-{unit}"
    password = dotenv.dotenv_values(credentials).get("KAFKA_PASSWORD_" + principal.replace("-", "_"))  # type: ignore[arg-type]
    if not password:
        sys.exit(f"no password for {principal} in {credentials}: run make up")
    asyncio.run(ReferenceCity(unit, KafkaConnection("127.0.0.1:9094").as_principal(principal, password)).run())
