"""Test data: valid submissions and petitioners, generated (never real people)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from stdnum.cn import ric

if TYPE_CHECKING:
    from xinfang_shared.contracts.events import DeadlineEvent

TOPICS = ["工资拖欠", "房屋拆迁补偿", "土地征收", "医疗纠纷", "环境污染"]
REGIONS = ["510104", "510107", "510116", "510185", "510302", "510703", "511402", "511702", "513401", "513201"]


# Regions whose codes existed for every birth year used below (an ID's region must predate its holder).
ID_REGIONS = ["513401", "110105", "510121", "513422"]


def id_number(rng: random.Random | None = None, *, region: str | None = None) -> str:
    """A resident ID number with a valid birth date, birth place and check digit (GB 11643)."""
    rng = rng or random.Random()
    region = region or rng.choice(ID_REGIONS)
    born = datetime(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))  # noqa: DTZ001 - a date only
    body = f"{region}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return body + ric.calc_check_digit(body + "0")  # it reads the first 17 of 18 characters


def mobile(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return f"1{rng.choice('3456789')}{rng.randrange(0, 10**9):09d}"


def submission(rng: random.Random | None = None, **overrides: Any) -> dict[str, Any]:
    rng = rng or random.Random()
    body: dict[str, Any] = {
        "external_id": f"ext-{uuid.uuid4()}",
        "channel": "letter",
        "submitted_at": (datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 600))).isoformat(),
        "petitioner": {"name": "测试人", "id_number": id_number(rng), "phone": mobile(rng)},
        "location": {"region_code": rng.choice(REGIONS), "detail": "某街道"},
        "title": f"关于{rng.choice(TOPICS)}的反映 {uuid.uuid4().hex[:6]}",
        "content": f"本人反映的问题编号{uuid.uuid4().hex}，"
        + rng.choice(["某公司拖欠工资三个月未发。", "拆迁补偿标准过低。", "村里土地被违规征收。", "工厂夜间排放废气。"])
        * rng.randrange(1, 5),
    }
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def registration(
    body: dict[str, Any],
    *,
    matter_id: uuid.UUID | None = None,
    tracking_code: str | None = None,
    registered_at: datetime | None = None,
    seal: Any = None,
    **fields: Any,
) -> Any:
    """matters.registered.v2 as intake publishes it for the submission `body`: the personal block and the tracking
    code sealed with `seal` (default: the dev transport key every service of the tests runs with), and opened on
    the returned event (as routing and notify see it). `fields`: more of the event's fields (duplicate_of, ...)."""
    from xinfang_shared.contracts.events import MatterRegisteredV2, SealedPersonal, Submission
    from xinfang_shared.personal import TransportSeal
    from xinfang_shared.settings import LOCAL_DEV_SECRET

    seal = seal or TransportSeal(LOCAL_DEV_SECRET)
    submission = Submission.model_validate(body)
    matter_id = matter_id or uuid.uuid4()
    personal = SealedPersonal(
        tracking_code=tracking_code or f"T{uuid.uuid4().hex[:15].upper()}",
        petitioner=submission.petitioner,
        representatives=submission.representatives,
        related_tracking_code=submission.related_tracking_code,
    )
    clear = submission.model_dump(exclude={"petitioner", "representatives", "related_tracking_code"})
    event = MatterRegisteredV2(
        **clear,
        matter_id=matter_id,
        registered_at=registered_at or datetime.now(UTC),
        representative_count=len(submission.representatives),
        sealed=seal.seal(personal.model_dump_json().encode(), matter_id=matter_id),
        **fields,
    )
    return event.with_opened(personal)


def deadline_event(
    state: Any,
    deadline: Any = "acceptance",
    *,
    matter_id: uuid.UUID | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> DeadlineEvent:
    """deadlines.events.v1: the `deadline` of a matter (default: a new one) reached `state` at `at` (default: now),
    due 15 days later, with city-5101. A met obligation was met on time (a window met is in no on-time figure)
    unless `on_time` says otherwise. `fields`: more of the event's fields (window, office, ...)."""
    from xinfang_shared.contracts.events import DeadlineEvent

    at = at or datetime.now(UTC)
    fields.setdefault("unit", "city-5101")
    fields.setdefault("on_time", True if state == "met" and not fields.get("window") else None)
    return DeadlineEvent(
        matter_id=matter_id or uuid.uuid4(),
        deadline=deadline,
        state=state,
        due_at=at + timedelta(days=15),
        at=at,
        **fields,
    )
