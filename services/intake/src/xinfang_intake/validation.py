"""One validation for both paths (Kafka channel topics and POST /v1/submissions).

`parse` turns raw bytes into a JSON object; `validate` checks it against the contract's shape (the shared
`Submission` model) and then against every rule of the contract the shape cannot express. Both return
field-level errors, `{field, message}`, that say what is wrong and what is expected.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from pydantic import ValidationError
from stdnum import numdb
from stdnum.cn import ric

from xinfang_shared.contracts.events import FieldError, Person, Submission, field_errors
from xinfang_shared.contracts.reference import Channel, Kind
from xinfang_shared.tracking import normalise
from xinfang_shared.workdays import CHINA

from .regions import is_sichuan_region

MAX_REPRESENTATIVES = 5  # statutory
# Matched whole (fullmatch) and with ASCII digits only.
_MOBILE = re.compile(r"(?:\+?86[- ]?)?1[3-9][0-9]{9}")
_LANDLINE = re.compile(r"(?:\+?86[- ]?)?0[0-9]{2,3}[- ]?[0-9]{7,8}(?:[- ][0-9]{1,6})?")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9Xx]")
# Every GB/T 2260 code, past and present (python-stdnum's table): ID numbers are issued for life.
_REGION_CODES = numdb.get("cn/loc")
REVIEW_KINDS = (Kind.REVIEW_REQUEST, Kind.RE_REVIEW_REQUEST)


@lru_cache(maxsize=8192)
def _known_region(code: str) -> bool:
    return bool(_REGION_CODES.info(code)[-1][1])


class Invalid(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} field error(s)")
        self.errors = errors


def error(field: str, message: str) -> FieldError:
    return FieldError(field=field, message=message)


def parse(raw: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Bytes → JSON object, or Invalid with the reason."""
    if len(raw) > max_bytes:
        raise Invalid([error("<message>", f"message is {len(raw)} bytes; at most {max_bytes} are accepted")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid([error("<message>", f"not UTF-8: invalid byte at position {exc.start}")]) from None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Invalid([error("<message>", f"not JSON: {exc}")]) from None
    if not isinstance(value, dict):
        raise Invalid([error("<message>", f"expected a JSON object, got {type(value).__name__}")])
    return value


def validate(
    body: dict[str, Any], *, now: datetime, skew: timedelta = timedelta(minutes=5), topic_channel: Channel | None = None
) -> Submission:
    """A valid Submission, or Invalid listing every problem found."""
    try:
        submission = Submission.model_validate(body)
    except ValidationError as exc:
        errors = field_errors(exc)
        if topic_channel is not None and "channel" in body and body["channel"] != topic_channel.value:
            errors.append(_channel_mismatch(topic_channel))
        raise Invalid(errors) from None
    check_rules(submission, now=now, skew=skew, topic_channel=topic_channel)
    return submission


def check_rules(
    submission: Submission,
    *,
    now: datetime,
    skew: timedelta = timedelta(minutes=5),
    topic_channel: Channel | None = None,
) -> None:
    """The contract's rules beyond the model's shape; raises Invalid listing every one broken."""
    errors = list(_rules(submission, now=now, skew=skew, topic_channel=topic_channel))
    if errors:
        raise Invalid(errors)


def _channel_mismatch(topic_channel: Channel) -> FieldError:
    return error("channel", f"must be '{topic_channel.value}' on the {topic_channel.value} channel's topic")


def _rules(s: Submission, *, now: datetime, skew: timedelta, topic_channel: Channel | None) -> Any:
    if topic_channel is not None and s.channel != topic_channel:
        yield _channel_mismatch(topic_channel)
    if s.submitted_at > now + skew:
        yield error("submitted_at", f"is in the future (more than {int(skew.total_seconds())} s ahead of the server)")
    yield from _person("petitioner", s.petitioner)
    if s.petitioner.email is not None and not _EMAIL.fullmatch(s.petitioner.email):
        yield error("petitioner.email", "is not an e-mail address")
    if len(s.representatives) > MAX_REPRESENTATIVES:
        yield error(
            "representatives",
            f"at most {MAX_REPRESENTATIVES} representatives (statutory); got {len(s.representatives)}",
        )
    if s.headcount > 1 and not s.representatives:
        yield error("representatives", "required when headcount > 1: a group elects 1 to 5 representatives")
    for i, rep in enumerate(s.representatives):
        yield from _person(f"representatives.{i}", rep)
    if s.channel == Channel.MAILBOX and s.mailbox is None:
        yield error("mailbox", "required when channel is mailbox: 'secretary' or 'governor'")
    if s.channel != Channel.MAILBOX and s.mailbox is not None:
        yield error("mailbox", "only for channel mailbox")
    if s.channel == Channel.VISIT and s.visit is None:
        yield error("visit", "required when channel is visit: {place: chengdu|beijing|other, unusual: bool}")
    if s.location is not None and not is_sichuan_region(s.location.region_code):
        yield error(
            "location.region_code",
            f"'{s.location.region_code}' is not a GB/T 2260 code of Sichuan in force (51xxxx, e.g. 510104)",
        )
    if s.kind in REVIEW_KINDS:
        if not s.related_tracking_code:
            yield error(
                "related_tracking_code", f"required for kind {s.kind.value}: the earlier matter's tracking code"
            )
        elif normalise(s.related_tracking_code) is None:
            yield error("related_tracking_code", "is not a tracking code (XXXX-XXXX-XXXX-XXXX; check character failed)")


def _person(prefix: str, person: Person) -> Any:
    reason = id_number_problem(person.id_number)
    if reason:
        yield error(f"{prefix}.id_number", reason)
    if not (_MOBILE.fullmatch(person.phone) or _LANDLINE.fullmatch(person.phone)):
        yield error(f"{prefix}.phone", "not a mainland mobile (1[3-9] and 9 digits) or landline (0xx(x)-xxxxxxx(x))")


def id_number_problem(id_number: str, *, today: date | None = None) -> str | None:
    """Why an 18-character resident ID number (GB 11643) is not valid, or None.

    Checked: 17 digits and a check digit, the check digit, a real birth date not in the future, and a region
    code that GB/T 2260 has known. Not checked: that the region code existed in the birth year, because a
    number is issued where a person is registered, which can be a district created after their birth.
    """
    if not _ID_SHAPE.fullmatch(id_number):
        return "resident ID must be 17 digits and a check digit (0-9 or X)"
    if ric.calc_check_digit(id_number) != id_number[-1].upper():
        return "resident ID check digit does not match (GB 11643)"
    try:
        born = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return "resident ID has an impossible birth date"
    if born > (today or datetime.now(CHINA).date()):  # a birth date is a date in China
        return "resident ID has a birth date in the future"
    if not _known_region(id_number[:6]):
        return "resident ID has an unknown region code (GB/T 2260)"
    return None
