"""The topic registry: every topic, its schema, partitions, producers and consumers, in one place.

Deploy scripts create topics from it, the contract tests snapshot its schemas, the AsyncAPI document is generated
from it, and so are the broker's ACLs (acls.py): who may write and read each topic is what it says here.

Producers and consumers are parties: a service of this cluster by name ("routing"), one unit's system
("unit:city-5101"), one channel system ("channel:letter"), or "operators" (the bureau's super users, who need no
ACL). A retired topic keeps its entry (external readers may still know it) with the reason, and nobody writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from . import events
from .reference import UNITS, Channel

DEFAULT_PARTITIONS = 12
# A unit's own feedback topics: the 35 units' topics are read by one consumer group, which spreads the partitions
# of all of them over its instances, so a few each give routing as much room to scale as the shared topic had.
PER_UNIT_PARTITIONS = 3
DLQ_PARTITIONS = 3
DLQ_SUFFIX = ".dlq"
OPERATORS = "operators"
# Dead letters are for operators to look at and replay; they hold whatever failed, so they are not kept for ever.
DLQ_RETENTION_MS = 14 * 24 * 3600 * 1000
# The broker stamps each record with the time it took it (not the producer's clock): a unit's feedback counts from
# when it reached the system, whatever time its own system claims.
ARRIVAL_TIME = {"message.timestamp.type": "LogAppendTime"}


@dataclass(frozen=True)
class Topic:
    name: str
    model: type[BaseModel]
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    # What the records are keyed by: their order holds per key.
    key: str = "matter_id"
    partitions: int = DEFAULT_PARTITIONS
    # Our own consumers dead-letter what they cannot process to <name>.dlq.
    has_dlq: bool = field(default=False)
    dlq_partitions: int = DLQ_PARTITIONS
    # Topic-level broker settings (created with them, and set again by deploy/local/topics.py).
    configs: tuple[tuple[str, str], ...] = ()
    # Why the topic is no longer written, when it is not.
    retired: str | None = None
    # Services that read it only to rebuild what they hold from the beginning (`xinfang-stats rebuild`): no
    # consumer group, nothing live. They may read it (ACLs), and are no consumers of it.
    replayers: tuple[str, ...] = ()

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is created on the broker."""

    partitions: int
    configs: tuple[tuple[str, str], ...] = ()
    # A keyed topic never gets more partitions: a key would move to another partition and lose its order.
    keyed: bool = True


def channel_topic(channel: Channel | str) -> str:
    return f"intake.{Channel(channel).value}.submitted.v1"


def channel_rejected_topic(channel: Channel | str) -> str:
    return f"intake.{Channel(channel).value}.rejected.v1"


def unit_inbox_topic(unit: str) -> str:
    return f"units.{unit}.inbox.v1"


def unit_feedback_topic(unit: str) -> str:
    return f"units.{unit}.feedback.v1"


def unit_feedback_rejected_topic(unit: str) -> str:
    return f"units.{unit}.feedback.rejected.v1"


CHANNEL_SUBMITTED = {
    channel: Topic(
        name=channel_topic(channel),
        model=events.Submission,
        description=f"Submissions from the {channel.value} channel system (only it may write here, only intake reads)",
        producers=(f"channel:{channel.value}",),
        consumers=("intake",),
        key="external_id",
        has_dlq=True,
    )
    for channel in Channel
}
CHANNEL_REJECTED = {
    channel: Topic(
        name=channel_rejected_topic(channel),
        model=events.SubmissionRejected,
        description=f"Submissions of the {channel.value} channel system's topic that were refused, with"
        " field-level reasons; read by that channel system only (its personal fields masked in `raw`)",
        producers=("intake",),
        consumers=(f"channel:{channel.value}",),
        key="external_id",
    )
    for channel in Channel
}

SUBMISSION_REJECTED = Topic(
    name="intake.submission.rejected.v1",
    model=events.SubmissionRejected,
    description="Every refused submission of every channel topic, for operators (channel systems read their own"
    " intake.<channel>.rejected.v1); personal fields masked in `raw`",
    producers=("intake",),
    consumers=(OPERATORS,),
    key="external_id",
)
MATTERS_REGISTERED = Topic(
    name="matters.registered.v1",
    model=events.MatterRegistered,
    description="Retired: a registered matter with the petitioner's personal data and tracking code in clear."
    " Its consumers still read it, to drain what an earlier release wrote before the upgrade",
    producers=(),
    consumers=("routing", "supervision", "notify", "stats"),
    has_dlq=True,
    retired="It carried the petitioner's and representatives' personal data and the tracking code in clear to"
    " every reader (stats and supervision included, which never use them). Replaced by matters.registered.v2,"
    " whose personal block is sealed for the services whose handling needs it. Nothing writes it any more.",
)
MATTERS_REGISTERED_V2 = Topic(
    name="matters.registered.v2",
    model=events.MatterRegisteredV2,
    description="A registered matter with its repeat marks; the petitioner's and representatives' personal data"
    " and the tracking codes travel in `sealed` (AES-256-GCM), which only routing and notify can open",
    producers=("intake",),
    consumers=("routing", "supervision", "notify", "stats"),
    has_dlq=True,
)
MATTERS_ROUTED = Topic(
    name="matters.routed.v1",
    model=events.MatterRouted,
    description="The office and unit a matter was routed to, with the rule that matched. The status change a"
    " matter is routed by (matters.status.v1, action routed) carries the same office, unit, category and rule: the"
    " services read that one, and this topic is kept for the systems written against it",
    producers=("routing",),
    consumers=(OPERATORS,),
    # The routings of matters routed by an earlier release, whose status changes did not carry them.
    replayers=("stats",),
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
    description="Feedback in any unit's name, which only operators may write (units write their own"
    " units.<unit>.feedback.v1); routing validates it and publishes what it changed on matters.status.v1",
    producers=(OPERATORS,),
    consumers=("routing",),
    has_dlq=True,
    configs=tuple(ARRIVAL_TIME.items()),
)
FEEDBACK_REJECTED = Topic(
    name="units.feedback.rejected.v1",
    model=events.FeedbackRejected,
    description="Refusals of the feedback operators sent on units.feedback.v1 (a unit's own refusals go to its"
    " units.<unit>.feedback.rejected.v1)",
    producers=("routing", "supervision"),
    consumers=(OPERATORS,),
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
    consumers=("stats", "intake", OPERATORS),
    has_dlq=True,
)
DEADLINE_WARNINGS = Topic(
    name="deadlines.warnings.v1",
    model=events.DeadlineEvent,
    description="The deadline events someone acts on or is told of: due-soon, overdue, escalated, extended, and a"
    " window closed. Each is also on deadlines.events.v1 under the same event_id; this topic leaves out the set, met,"
    " paused and resumed bookkeeping (most of that topic), which its readers would only skip",
    producers=("supervision",),
    consumers=("notify", "routing", OPERATORS),
    has_dlq=True,
)
STATS_ALERTS = Topic(
    name="stats.alerts.v1",
    model=events.StatsAlert,
    description="A region or category whose rate jumped above its own baseline",
    producers=("stats",),
    consumers=("notify", OPERATORS),
    key="region_code or category",
    has_dlq=True,
)
STATS_REPORTS = Topic(
    name="stats.reports.v1",
    model=events.StatsReport,
    description="An analysis report is ready (the monthly one, made once on the 1st at 08:00 Beijing time): its id"
    " and period, not its content; notify fetches the PDF from stats' API (GET /v1/stats/reports/{report_id}) and"
    " sends it to the general office and the bureau's leaders",
    producers=("stats",),
    consumers=("notify", OPERATORS),
    key="report_id",
    has_dlq=True,
)
UNIT_INBOXES = {
    unit: Topic(
        name=unit_inbox_topic(unit),
        model=events.UnitInboxMessage,
        description=f"Matters transferred or assigned to {unit}, supervision orders, withdrawals of matters"
        " reassigned elsewhere, and reminders of its deadlines; read by that unit only",
        producers=("routing", "supervision", "notify"),
        consumers=(f"unit:{unit}",),
    )
    for unit in UNITS
}
UNIT_FEEDBACK = {
    unit: Topic(
        name=unit_feedback_topic(unit),
        model=events.UnitFeedback,
        description=f"What {unit} did with its matters (received, accepted, objected, concluded, ...); written by"
        " that unit only. The unit is the topic's: a body naming another unit is refused. Routing validates it"
        " and publishes what it changed on matters.status.v1",
        producers=(f"unit:{unit}",),
        consumers=("routing",),
        partitions=PER_UNIT_PARTITIONS,
        has_dlq=True,
        dlq_partitions=1,
        configs=tuple(ARRIVAL_TIME.items()),
    )
    for unit in UNITS
}
UNIT_FEEDBACK_REJECTED = {
    unit: Topic(
        name=unit_feedback_rejected_topic(unit),
        model=events.FeedbackRejected,
        description=f"Refusals of {unit}'s feedback (by routing, or by supervision for an extension), with the"
        " reasons; read by that unit only",
        producers=("routing", "supervision"),
        consumers=(f"unit:{unit}",),
        partitions=PER_UNIT_PARTITIONS,
    )
    for unit in UNITS
}
UNIT_OF_FEEDBACK_TOPIC: dict[str, str] = {topic.name: unit for unit, topic in UNIT_FEEDBACK.items()}

CONTRACT_TOPICS: tuple[Topic, ...] = (
    *CHANNEL_SUBMITTED.values(),
    *CHANNEL_REJECTED.values(),
    SUBMISSION_REJECTED,
    MATTERS_REGISTERED,
    MATTERS_REGISTERED_V2,
    MATTERS_ROUTED,
    MATTERS_RATED,
    UNITS_FEEDBACK,
    FEEDBACK_REJECTED,
    MATTERS_STATUS,
    DEADLINES_EVENTS,
    DEADLINE_WARNINGS,
    STATS_ALERTS,
    STATS_REPORTS,
    *UNIT_INBOXES.values(),
    *UNIT_FEEDBACK.values(),
    *UNIT_FEEDBACK_REJECTED.values(),
)

BY_NAME: dict[str, Topic] = {topic.name: topic for topic in CONTRACT_TOPICS}
# The topics written today (a retired one keeps its entry, unwritten).
LIVE_TOPICS: tuple[Topic, ...] = tuple(t for t in CONTRACT_TOPICS if t.retired is None)

# The services of this cluster; every other producer or consumer named above is a system outside it.
SERVICES: tuple[str, ...] = ("intake", "routing", "supervision", "notify", "stats")


def topics_to_create() -> dict[str, TopicSpec]:
    """Every topic the cluster needs, contract topics and their dead-letter topics, as the broker creates them."""
    wanted = {
        topic.name: TopicSpec(topic.partitions, topic.configs, keyed=topic.key is not None) for topic in CONTRACT_TOPICS
    }
    dlq = (("retention.ms", str(DLQ_RETENTION_MS)),)
    # Dead letters are looked at and replayed one by one: their order is nobody's promise, so they may grow.
    wanted |= {
        topic.dlq: TopicSpec(topic.dlq_partitions, dlq, keyed=False) for topic in CONTRACT_TOPICS if topic.has_dlq
    }
    return wanted
