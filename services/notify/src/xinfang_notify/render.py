"""Notices in words: a Jinja2 template per notice and language (templates/<language>/<notice>.txt, a first line
`Subject: ...`), with StrictUndefined (a parameter a template names but is not given is an error, never an
empty space in a letter) and dates and durations formatted by Babel in Beijing time.

A period's end is shown as its last day (a due time is 24:00 Beijing time of that day: `last_day`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime, format_timedelta
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from xinfang_shared.contracts.reference import CITIES, Category, Language
from xinfang_shared.periods import period_last_day
from xinfang_shared.workdays import CHINA

TEMPLATES = Path(__file__).with_name("templates")
LOCALE = {Language.ZH_CN: "zh_CN", Language.EN: "en"}

# What a code is called in a notice, per language.
WORDS: dict[Language, dict[str, str]] = {
    Language.ZH_CN: {
        "handling": "处理",
        "review": "复查",
        "re-review": "复核",
        "support": "支持",
        "explain": "解释说明",
        "not-support": "不支持",
        "routing": "登记转送",
        "acceptance": "受理告知",
        "objection": "异议",
        "PT15M": "15分钟",
        "PT1H": "1小时",
        "PT3H": "3小时",
    },
    Language.EN: {
        "handling": "handling",
        "review": "review",
        "re-review": "re-review",
        "support": "your request is supported",
        "explain": "explained",
        "not-support": "your request is not supported",
        "routing": "routing",
        "acceptance": "acceptance",
        "objection": "objection",
        "PT15M": "15 minutes",
        "PT1H": "hour",
        "PT3H": "3 hours",
    },
}
NEXT = {"handling": "review", "review": "re-review"}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class Renderer:
    def __init__(self, templates: Path = TEMPLATES) -> None:
        self.environments = {language: self._environment(templates / language.value, language) for language in Language}

    @staticmethod
    def _environment(folder: Path, language: Language) -> Environment:
        locale = LOCALE[language]
        env = Environment(
            loader=FileSystemLoader(folder),
            undefined=StrictUndefined,
            autoescape=False,  # plain text: e-mail text/plain and SMS  # noqa: S701
            keep_trailing_newline=False,
        )

        def as_datetime(value: str | datetime) -> datetime:
            return value if isinstance(value, datetime) else datetime.fromisoformat(value)

        env.filters["date"] = lambda v: format_date(as_datetime(v).astimezone(CHINA).date(), "long", locale=locale)
        env.filters["datetime"] = lambda v: format_datetime(as_datetime(v), "short", tzinfo=CHINA, locale=locale)
        env.filters["last_day"] = lambda v: format_date(period_last_day(as_datetime(v)), "long", locale=locale)
        env.filters["days"] = lambda n: format_timedelta(timedelta(days=int(n)), threshold=10**6, locale=locale)
        return env

    def render(self, notice: str, language: Language, params: dict[str, Any]) -> Rendered:
        template = self.environments[language].get_template(f"{notice}.txt")
        text = template.render(**params).strip()
        first, _, rest = text.partition("\n")
        if not first.startswith("Subject: "):
            raise ValueError(f"templates/{language.value}/{notice}.txt must start with a 'Subject: ' line")
        return Rendered(first.removeprefix("Subject: ").strip(), rest.strip() + "\n")


def words(language: Language) -> dict[str, str]:
    return WORDS[language]


def scope(region_code: str | None, category: str | None, language: Language) -> str:
    """What a surge is about, in words: a city, a category, or both."""
    parts = []
    if region_code:
        name = CITIES.get(f"city-{region_code}", region_code)
        en, _, zh = name.rpartition(" ")
        parts.append(zh if language == Language.ZH_CN else en or name)
    if category:
        parts.append(Category(category).value)
    return "·".join(parts) if language == Language.ZH_CN else ", ".join(parts)


def today(at: datetime) -> date:
    return at.astimezone(CHINA).date()
