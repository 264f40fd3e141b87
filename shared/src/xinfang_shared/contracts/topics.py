"""The topic registry: every v1 topic, its schema, partitions, producers and consumers, in one place.

Deploy scripts create topics from it, the contract tests snapshot its schemas, and the AsyncAPI document is
generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from . import events
from .reference import UNITS, Channel

DEFAULT_PARTITIONS = 12
DLQ_PARTITIONS = 3
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    model: type[BaseModel]
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    key: str = "matter_id"
    partitions: int = DEFAULT_PARTITIONS
    # Our own consumers dead-letter what they cannot process to <name>.dlq.
    has_dlq: bool = field(default=False)

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


def channel_topic(channel: Channel | str) -> str:
    return f"intake.{Channel(channel).value}.submitted.v1"


def unit_inbox_topic(unit: str) -> str:
    return f"units.{unit}.inbox.v1"


CHANNEL_SUBMITTED = {
    channel: Topic(
        name=channel_topic(channel),
        model=events.Submission,
        description=f"Submissions from the {channel.value} channel system",
        producers=(f"channel:{channel.value}",),
        consumers=("intake",),
        key="external_id",
        has_dlq=True,
    )
    for channel in Channel
}

SUBMISSION_REJECTED = Topic(
    name="intake.submission.rejected.v1",
    model=events.SubmissionRejected,
    description="A submission that failed validation, with field-level reasons",
    producers=("intake",),
    consumers=("channel systems",),
    key="external_id",
)
MATTERS_REGISTERED = Topic(
    name="matters.registered.v1",
    model=events.MatterRegistered,
    description="A registered matter with its tracking code and repeat marks",
    producers=("intake",),
    consumers=("routing", "supervision", "notify", "stats"),
    has_dlq=True,
)
MATTERS_ROUTED = Topic(
    name="matters.routed.v1",
    model=events.MatterRouted,
    description="The office and unit a matter was routed to, with the rule that matched",
    producers=("routing",),
    consumers=("supervision", "notify", "stats", "intake"),
    has_dlq=True,
)
MATTERS_RATED = Topic(
    name="matters.rated.v1",
    model=events.MatterRated,
    description="A petitioner's rating of the handling opinion",
    producers=("intake",),
    consumers=("stats",),
    has_dlq=True,
)
UNITS_FEEDBACK = Topic(
    name="units.feedback.v1",
    model=events.UnitFeedback,
    description="What a unit did with a matter (received, accepted, objected, concluded, ...); routing validates"
    " it and publishes what it changed on matters.status.v1, which everyone else reads",
    producers=("unit systems",),
    consumers=("routing",),
    has_dlq=True,
)
FEEDBACK_REJECTED = Topic(
    name="units.feedback.rejected.v1",
    model=events.FeedbackRejected,
    description="Unit feedback that was refused (by routing, or by supervision for an extension), with the reasons",
    producers=("routing", "supervision"),
    consumers=("unit systems",),
)
MATTERS_STATUS = Topic(
    name="matters.status.v1",
    model=events.MatterStatusChanged,
    description="Every lifecycle change of a matter",
    producers=("routing",),
    consumers=("supervision", "notify", "stats", "intake"),
    has_dlq=True,
)
DEADLINES_EVENTS = Topic(
    name="deadlines.events.v1",
    model=events.DeadlineEvent,
    description="Statutory deadlines set, warned, missed, met, extended, paused, resumed, escalated, closed",
    producers=("supervision",),
    consumers=("notify", "stats", "intake", "routing", "unit systems"),
    has_dlq=True,
)
STATS_ALERTS = Topic(
    name="stats.alerts.v1",
    model=events.StatsAlert,
    description="A region or category whose rate jumped above its own baseline",
    producers=("stats",),
    consumers=("notify", "operators"),
    key="region_code or category",
    has_dlq=True,
)
UNIT_INBOXES = {
    unit: Topic(
        name=unit_inbox_topic(unit),
        model=events.UnitInboxMessage,
        description=f"Matters transferred or assigned to {unit}, supervision orders, withdrawals of matters"
        " reassigned elsewhere, and reminders of its deadlines; read by that unit only",
        producers=("routing", "supervision", "notify"),
        consumers=(unit,),
    )
    for unit in UNITS
}

CONTRACT_TOPICS: tuple[Topic, ...] = (
    *CHANNEL_SUBMITTED.values(),
    SUBMISSION_REJECTED,
    MATTERS_REGISTERED,
    MATTERS_ROUTED,
    MATTERS_RATED,
    UNITS_FEEDBACK,
    FEEDBACK_REJECTED,
    MATTERS_STATUS,
    DEADLINES_EVENTS,
    STATS_ALERTS,
    *UNIT_INBOXES.values(),
)

BY_NAME: dict[str, Topic] = {topic.name: topic for topic in CONTRACT_TOPICS}

# The services of this cluster; every other producer or consumer named above is a system outside it.
SERVICES: tuple[str, ...] = ("intake", "routing", "supervision", "notify", "stats")


def topics_to_create() -> dict[str, int]:
    """Every topic the cluster needs, contract topics and their dead-letter topics, with partitions."""
    wanted = {topic.name: topic.partitions for topic in CONTRACT_TOPICS}
    wanted |= {topic.dlq: DLQ_PARTITIONS for topic in CONTRACT_TOPICS if topic.has_dlq}
    return wanted
