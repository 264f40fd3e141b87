"""Pydantic models of every v1 message (CONTRACT.md).

Consumers ignore fields they do not know (`extra="ignore"`), so producers may add fields within v1.
Personal-data fields carry `repr=False` and the JSON-Schema mark `x-personal-data`, so they never show up
in a repr (and so in a log line or an exception) by accident.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic.config import JsonDict

from .reference import (
    Addressee,
    AssignedBy,
    Category,
    Channel,
    DeadlineState,
    DeadlineType,
    FeedbackAction,
    Kind,
    Language,
    Level,
    Mailbox,
    Office,
    OpinionResult,
    Rating,
    VisitPlace,
)
from .values import UNIT_CODE, Instant, Line, Text

PERSONAL: JsonDict = {"x-personal-data": True}


def utc_now() -> datetime:
    return datetime.now(UTC)


def _personal(description: str, **kwargs: Any) -> Any:
    return Field(description=description, repr=False, json_schema_extra=PERSONAL, **kwargs)


class ContractModel(BaseModel):
    model_config = ConfigDict(extra="ignore", use_enum_values=False, frozen=False)


class Event(ContractModel):
    """Fields every event carries."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id; consumers de-duplicate on it")
    occurred_at: AwareDatetime = Field(default_factory=utc_now, description="When it happened (RFC 3339)")


# --- submissions -------------------------------------------------------------------------------------


class Person(ContractModel):
    name: Line = _personal("Full name", min_length=1, max_length=100)
    id_number: Line = _personal("18-character resident ID number", min_length=18, max_length=18)
    phone: Line = _personal("Mainland mobile or landline number", min_length=5, max_length=20)


class Petitioner(Person):
    address: Text | None = _personal("Postal address", default=None, max_length=500)
    email: Line | None = _personal("E-mail address", default=None, max_length=254)


class Visit(ContractModel):
    place: VisitPlace = Field(description="Where the visit was made")
    unusual: bool = Field(default=False, description="Flagged as an unusual visit (非正常上访)")


class Location(ContractModel):
    region_code: str = Field(description="6-digit GB/T 2260 code in Sichuan (51xxxx)", pattern=r"^\d{6}$")
    detail: Text | None = Field(default=None, max_length=500, description="Street, village, building")


SUBMISSION_EXAMPLE: JsonDict = {
    "external_id": "LR-2026-000123",
    "channel": "letter",
    "submitted_at": "2026-11-20T09:30:00+08:00",
    "kind": "complaint",
    "petitioner": {"name": "张某", "id_number": "11010519491231002X", "phone": "13800138000"},
    "location": {"region_code": "510104", "detail": "锦江区某街道"},
    "title": "反映某公司拖欠工资",
    "content": "某公司自今年八月起拖欠工资三个月，多次讨要无果，请求督促解决。",
}


class Submission(ContractModel):
    """A matter as a channel system hands it over (channel topics and POST /v1/submissions)."""

    model_config = ConfigDict(json_schema_extra={"examples": [SUBMISSION_EXAMPLE]})

    external_id: Line = Field(min_length=1, max_length=128, description="The channel system's own id")
    channel: Channel
    submitted_at: Instant = Field(description="RFC 3339 with offset; not in the future, not before 1970")
    kind: Kind = Kind.COMPLAINT
    addressee: Addressee = Addressee.BUREAU
    mailbox: Mailbox | None = Field(default=None, description="Required when channel is mailbox")
    assigned_by: AssignedBy | None = None
    petitioner: Petitioner
    headcount: int = Field(default=1, ge=1, le=1_000_000, description="How many people raise it")
    representatives: list[Person] = Field(default_factory=list, description="At most 5; required when headcount > 1")
    visit: Visit | None = Field(default=None, description="Required when channel is visit")
    location: Location | None = None
    level: Level = Level.LOCAL
    category: Category | None = Field(default=None, description="Inferred when absent")
    related_tracking_code: Line | None = Field(default=None, max_length=64, description="Required for review requests")
    title: Text = Field(min_length=1, max_length=200)
    content: Text = Field(min_length=1, max_length=20_000)
    language: Language = Field(default=Language.ZH_CN, description="The language of the petitioner's notices")


class FieldError(ContractModel):
    field: str = Field(description="Dotted path of the offending field, e.g. petitioner.id_number")
    message: str = Field(description="What is wrong and what is expected")


def field_errors(exc: ValidationError, *, whole: str = "<message>") -> list[FieldError]:
    """A pydantic error as contract field errors: dotted paths, `whole` for the message itself."""
    return [
        FieldError(field=".".join(str(part) for part in e["loc"]) or whole, message=e["msg"])
        for e in exc.errors(include_url=False, include_input=False)
    ]


class SubmissionRejected(Event):
    channel: str | None = Field(default=None, description="The channel, if it could be read")
    external_id: str | None = Field(default=None, description="The external id, if it could be read")
    errors: list[FieldError]
    raw: str = Field(description="The original bytes as text, truncated to 64 KiB")


# --- matters -----------------------------------------------------------------------------------------


class _Registration(Event):
    """What every registration tells of its matter, in clear."""

    matter_id: uuid.UUID
    channel: Channel
    external_id: str
    registered_at: AwareDatetime
    duplicate_of: uuid.UUID | None = Field(default=None, description="The earlier matter this one repeats")
    not_accepted_again: bool = Field(default=False, description="Re-raised after a terminated case")
    submitted_at: AwareDatetime
    kind: Kind
    addressee: Addressee
    mailbox: Mailbox | None = None
    assigned_by: AssignedBy | None = None
    headcount: int
    visit: Visit | None = None
    location: Location | None = None
    level: Level
    category: Category | None = None
    title: str
    content: str
    language: Language = Field(default=Language.ZH_CN, description="The language of the petitioner's notices")


class MatterRegistered(_Registration):
    """Retired (matters.registered.v1): read only to drain what an earlier release wrote."""

    tracking_code: str
    petitioner: Petitioner
    representatives: list[Person] = Field(default_factory=list)
    related_tracking_code: str | None = None


class SealedPersonal(ContractModel):
    """What the `sealed` block of matters.registered.v2 holds, once opened: everything about a matter that only
    the services whose handling needs it may know (routing: the handling unit's inbox; notify: the petitioner's
    contact and the code the petitioner uses)."""

    tracking_code: str = _personal("The petitioner's code for the look-up and the rating (a secret)")
    petitioner: Petitioner = _personal("The petitioner")
    representatives: list[Person] = _personal("A group's representatives", default_factory=list)
    related_tracking_code: str | None = _personal(
        "The tracking code the review request named (the petitioner's own earlier one)", default=None
    )


class MatterRegisteredV2(_Registration):
    """A registered matter. Nothing personal travels in clear: the petitioner, the representatives and the
    tracking codes are sealed (AES-256-GCM, authenticated with the matter_id) in `sealed`, which only the
    services whose handling needs them hold the key to open (routing and notify)."""

    representative_count: int = Field(default=0, description="How many representatives the group elected")
    related_matter_id: uuid.UUID | None = Field(
        default=None, description="For a review or re-review request: the matter whose opinion it contests"
    )
    received_by: str | None = Field(
        default=None,
        max_length=100,
        description="Who of the bureau's staff registered it at reception (`staff:<user>`): the person the"
        " console's own channel key named; null for a channel system's submission. Staff identity, not personal"
        " data of the petitioner: in clear",
    )
    sealed: str = Field(
        description="The personal block (SealedPersonal) as `<version>.<key id>.<base64url(nonce | ciphertext)>`:"
        " AES-256-GCM under the transport key, the matter_id as associated data (a block moved to another"
        " matter does not open)"
    )
    # The block once opened by a reader that holds the key (personal.py); never serialised.
    _opened: SealedPersonal | None = PrivateAttr(default=None)

    def opened(self) -> SealedPersonal:
        if self._opened is None:
            raise RuntimeError("the personal block of this registration was not opened")
        return self._opened

    def with_opened(self, personal: SealedPersonal) -> MatterRegisteredV2:
        self._opened = personal
        return self


class MatterRouted(Event):
    matter_id: uuid.UUID
    office: Office
    unit: str | None = Field(description="Unit code, or null while in the office's manual queue")
    category: Category
    category_inferred: bool
    rule: str = Field(description="Id of the office rule that matched")
    routed_at: AwareDatetime


class MatterStatus(StrEnum):
    """The lifecycle (DOMAIN.md), as routing publishes it. A review and a re-review are matters of their own
    (kind review-request / re-review-request), linked to the matter whose opinion they contest: that one goes
    review-requested / re-review-requested when they are registered, and the whole chain is terminated when
    the re-review concludes (三级终结), or closed when a request window lapses unused."""

    REGISTERED = "registered"
    DUPLICATE = "duplicate"
    NOT_ACCEPTED_AGAIN = "not-accepted-again"
    AWAITING_ASSIGNMENT = "awaiting-assignment"
    TRANSFERRED = "transferred"
    OBJECTED = "objected"
    ACCEPTED = "accepted"
    NOT_ACCEPTED = "not-accepted"
    CONCLUDED = "concluded"
    CLOSED = "closed"
    REVIEW_REQUESTED = "review-requested"
    IN_REVIEW = "in-review"
    REVIEW_CONCLUDED = "review-concluded"
    RE_REVIEW_REQUESTED = "re-review-requested"
    IN_RE_REVIEW = "in-re-review"
    RE_REVIEW_CONCLUDED = "re-review-concluded"
    TERMINATED = "terminated"


class Opinion(ContractModel):
    result: OpinionResult
    text: Text = Field(min_length=1, max_length=20_000)


class MatterStatusChanged(Event):
    matter_id: uuid.UUID
    status: MatterStatus
    previous_status: MatterStatus | None
    unit: str | None
    at: AwareDatetime
    opinion: Opinion | None = Field(default=None, description="The handling opinion, when status is a conclusion")
    action: str | None = Field(
        default=None,
        description="What caused the change: routed, reassigned, or the unit's feedback action (received, ...)",
    )
    extension_days: int | None = Field(
        default=None,
        ge=1,
        description="With action extension-requested: the days the unit asked for (supervision grants or refuses)",
    )
    office: Office | None = Field(default=None, description="The office responsible for the matter, once routed")
    # Free text a unit wrote: may name people, so it is treated as personal data (shown to the petitioner only).
    reason: str | None = _personal(
        "Why, where the change has a reason: the unit's (not accepted, an extension asked)", default=None
    )
    reported_at: AwareDatetime | None = Field(
        default=None,
        description="With a unit's action: the time the unit said it acted, kept for the record. `at` is when its"
        " feedback reached the system, the time every deadline is judged by",
    )
    category: Category | None = Field(
        default=None,
        description="With action routed: the category it was routed under (given, or inferred), as on"
        " matters.routed.v1, so that a reader of the lifecycle need not read that topic as well",
    )
    rule: str | None = Field(
        default=None, description="With action routed: the id of the office rule that matched, as on matters.routed.v1"
    )


class MatterRated(Event):
    """The petitioner's rating of the handling opinion (through intake's look-up)."""

    matter_id: uuid.UUID
    rating: Rating
    at: AwareDatetime


class UnitInboxMessage(Event):
    """What a unit's system receives on units.<unit>.inbox.v1."""

    type: Literal["transfer", "assign", "supervision-order", "withdrawal", "reminder"] = Field(
        description="transfer (转送) or assign (交办) a matter, a supervision order (督办) on an overdue one,"
        " withdrawal: the matter was reassigned to another unit and is no longer this unit's, or reminder: a"
        " deadline of the unit's is due soon or passed (notify's notice, for units told through their inbox)"
    )
    matter_id: uuid.UUID = Field(description="The matter: how a unit names it in its feedback")
    unit: str
    office: Office
    tracking_code: str | None = Field(
        default=None,
        description="Withheld (always null): the tracking code is the petitioner's secret for the look-up and the"
        " rating; a unit names a matter by its matter_id",
    )
    respond_by: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="Deadline type → when the unit must have acted"
    )
    kind: Kind | None = None
    category: Category | None = None
    title: str | None = None
    content: str | None = None
    location: Location | None = None
    petitioner: Petitioner | None = _personal(
        "Contact of the petitioner; null for accusations sent towards the accused's own unit", default=None
    )
    order_text: str | None = Field(default=None, description="The supervision order's text")


class UnitFeedback(Event):
    matter_id: uuid.UUID
    unit: str = Field(max_length=64, pattern=UNIT_CODE, description="The unit's code, e.g. city-5101")
    action: FeedbackAction
    at: Instant = Field(description="When the unit acted; not in the future, not before the matter reached it")
    reason: Text | None = Field(default=None, max_length=5_000)
    extension_days: int | None = Field(default=None, ge=1, le=366)
    opinion: Opinion | None = None


class FeedbackRejected(Event):
    matter_id: uuid.UUID | None = None
    unit: str | None = None
    errors: list[FieldError]
    raw: str = Field(description="The original message as text, truncated to 64 KiB")


# Deadline states someone must act on or be told of (notify urges units and tells petitioners of extensions).
WARNING_STATES = frozenset(
    {DeadlineState.DUE_SOON, DeadlineState.OVERDUE, DeadlineState.ESCALATED, DeadlineState.EXTENDED}
)


class DeadlineEvent(Event):
    matter_id: uuid.UUID
    deadline: DeadlineType
    state: DeadlineState
    due_at: AwareDatetime
    unit: str | None
    at: AwareDatetime
    office: Office | None = Field(default=None, description="The office responsible for the matter, when known")
    on_time: bool | None = Field(
        default=None,
        description="With state met: whether it was met by its due time (the on-time figures); null for a window",
    )
    window: bool = Field(
        default=False,
        description="A window someone may use (the objection window, a petitioner's window to request a review),"
        " not a duty: never overdue, and in no on-time figure",
    )
    extension_days: int | None = Field(default=None, description="With state extended: the days granted")
    reason: str | None = _personal("With state extended: the unit's reason for it", default=None)

    @property
    def is_warning(self) -> bool:
        """Whether it goes on deadlines.warnings.v1 as well: someone acts on it or is told of it."""
        if self.state == DeadlineState.CLOSED:
            return self.window  # a petitioner's window lapsed (or ended): routing closes the matter's chain
        return self.state in WARNING_STATES


class StatsAlert(Event):
    alert_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="The alert; its open and closed events share it"
    )
    state: Literal["open", "closed"] = Field(default="open", description="open: a surge began; closed: it is over")
    method: str = Field(default="", description="How the baseline and the test were made")
    region_code: str | None = None
    category: Category | None = None
    window: str = Field(description="ISO 8601 duration of the window observed, e.g. PT1H")
    observed: int
    baseline: float
    at: AwareDatetime


class StatsReport(Event):
    """An analysis report stats made and keeps (the monthly one): where to fetch it, never its content. The PDF
    holds figures only, but a few hundred kilobytes is no record for the bus; notify fetches it from stats' API."""

    report_id: uuid.UUID = Field(description="GET /v1/stats/reports/{report_id} returns the PDF")
    period_start: date = Field(description="The first Beijing day the report covers")
    period_end: date = Field(description="The last Beijing day it covers (inclusive)")
    language: Language = Field(description="The report's language")
    pages: int = Field(ge=1, description="Pages of the PDF")
    size_bytes: int = Field(ge=1, description="Size of the PDF")
