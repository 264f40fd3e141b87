"""Reference vocabulary of the public contract: channels, kinds, offices, units, categories.

These codes are part of v1 (DOMAIN.md, CONTRACT.md): other systems are written against them.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    LETTER = "letter"
    VISIT = "visit"
    ONLINE = "online"
    MAILBOX = "mailbox"


class Language(StrEnum):
    """The language of the petitioner's notices."""

    ZH_CN = "zh-CN"
    EN = "en"


class Kind(StrEnum):
    COMPLAINT = "complaint"
    REQUEST = "request"
    SUGGESTION = "suggestion"
    ACCUSATION = "accusation"
    REVIEW_REQUEST = "review-request"
    RE_REVIEW_REQUEST = "re-review-request"
    DEPUTY_PROPOSAL = "deputy-proposal"


class Addressee(StrEnum):
    SECRETARY = "secretary"
    GOVERNOR = "governor"
    PROVINCIAL_COMMITTEE = "provincial-committee"
    PROVINCIAL_GOVERNMENT = "provincial-government"
    STANDING_COMMITTEE_MEMBER = "standing-committee-member"
    VICE_GOVERNOR = "vice-governor"
    BUREAU = "bureau"


class Mailbox(StrEnum):
    SECRETARY = "secretary"
    GOVERNOR = "governor"


class AssignedBy(StrEnum):
    CENTRAL_LEADERSHIP = "central-leadership"
    CENTRAL_DEPARTMENT = "central-department"


class VisitPlace(StrEnum):
    CHENGDU = "chengdu"
    BEIJING = "beijing"
    OTHER = "other"


class Level(StrEnum):
    LOCAL = "local"
    PROVINCIAL = "provincial"


class Office(StrEnum):
    LETTERS_1 = "letters-1"
    LETTERS_2 = "letters-2"
    RECEPTION = "reception"
    GUIDANCE = "guidance"
    ONLINE = "online"
    SUPERVISION = "supervision"
    POLICY = "policy"
    GENERAL = "general"


class Category(StrEnum):
    LAND = "land"
    HOUSING = "housing"
    LABOR = "labor"
    RURAL = "rural"
    HEALTH = "health"
    EDUCATION = "education"
    ENVIRONMENT = "environment"
    TRANSPORT = "transport"
    CIVIL_AFFAIRS = "civil-affairs"
    PUBLIC_SECURITY = "public-security"
    ECONOMY = "economy"
    LITIGATION = "litigation"
    DISCIPLINE = "discipline"
    OTHER = "other"


class FeedbackAction(StrEnum):
    RECEIVED = "received"
    ACCEPTED = "accepted"
    NOT_ACCEPTED = "not-accepted"
    OBJECTED = "objected"
    EXTENSION_REQUESTED = "extension-requested"
    CONCLUDED = "concluded"


class OpinionResult(StrEnum):
    SUPPORT = "support"
    EXPLAIN = "explain"
    NOT_SUPPORT = "not-support"


class DeadlineType(StrEnum):
    ROUTING = "routing"
    ACCEPTANCE = "acceptance"
    OBJECTION = "objection"
    HANDLING = "handling"
    REVIEW = "review"
    RE_REVIEW = "re-review"


class DeadlineState(StrEnum):
    SET = "set"
    DUE_SOON = "due-soon"
    OVERDUE = "overdue"
    MET = "met"
    EXTENDED = "extended"
    PAUSED = "paused"
    RESUMED = "resumed"
    ESCALATED = "escalated"
    # A window lapsed unused, or the deadline ended without being met (termination, reassignment).
    CLOSED = "closed"


class Rating(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically-satisfied"
    UNSATISFIED = "unsatisfied"


# The 21 cities and prefectures of Sichuan, keyed by unit code (GB/T 2260 first four digits).
CITIES: dict[str, str] = {
    "city-5101": "Chengdu 成都",
    "city-5103": "Zigong 自贡",
    "city-5104": "Panzhihua 攀枝花",
    "city-5105": "Luzhou 泸州",
    "city-5106": "Deyang 德阳",
    "city-5107": "Mianyang 绵阳",
    "city-5108": "Guangyuan 广元",
    "city-5109": "Suining 遂宁",
    "city-5110": "Neijiang 内江",
    "city-5111": "Leshan 乐山",
    "city-5113": "Nanchong 南充",
    "city-5114": "Meishan 眉山",
    "city-5115": "Yibin 宜宾",
    "city-5116": "Guang'an 广安",
    "city-5117": "Dazhou 达州",
    "city-5118": "Ya'an 雅安",
    "city-5119": "Bazhong 巴中",
    "city-5120": "Ziyang 资阳",
    "city-5132": "Aba 阿坝",
    "city-5133": "Garzê 甘孜",
    "city-5134": "Liangshan 凉山",
}

# The default taxonomy: the provincial department in charge of each category (DOMAIN.md).
DEPARTMENT_FOR_CATEGORY: dict[Category, str] = {
    Category.LAND: "dept-natural-resources",
    Category.HOUSING: "dept-housing",
    Category.LABOR: "dept-human-resources",
    Category.RURAL: "dept-agriculture",
    Category.HEALTH: "dept-health",
    Category.EDUCATION: "dept-education",
    Category.ENVIRONMENT: "dept-ecology",
    Category.TRANSPORT: "dept-transport",
    Category.CIVIL_AFFAIRS: "dept-civil-affairs",
    Category.PUBLIC_SECURITY: "dept-public-security",
    Category.ECONOMY: "dept-development-reform",
    Category.LITIGATION: "dept-political-legal",
    Category.DISCIPLINE: "dept-discipline",
}

DEPARTMENTS: tuple[str, ...] = tuple(sorted(set(DEPARTMENT_FOR_CATEGORY.values())))

# The bureau itself as a handling unit: the Supervision and Review Office decides the reviews and re-reviews
# that fall to the provincial government (of a department's opinion, or of a department's review), doing the
# routine work of its Review Commission (DOMAIN.md). It has an inbox, a unit key and gives feedback like any.
REVIEW_OFFICE_UNIT = "office-supervision"

# Every unit that can be transferred or assigned a matter, and so has an inbox topic.
UNITS: tuple[str, ...] = (*CITIES.keys(), *DEPARTMENTS, REVIEW_OFFICE_UNIT)
