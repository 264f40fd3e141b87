"""Value types the contract's inputs share: text that can be stored and published, instants in range.

Anything a channel system or a unit sends is stored in PostgreSQL (text, jsonb) and published again as JSON.
A value that passes a plain `str` or `datetime` check can still fail there, and a batch of others with it:
  - NUL (U+0000): PostgreSQL's text and jsonb cannot hold it;
  - lone surrogates (U+D800–U+DFFF): not encodable as UTF-8, so neither storable nor publishable;
  - other control characters (C0 but tab and line breaks, DEL, C1) and the noncharacters U+FFFE/U+FFFF:
    never part of a real letter, and they break the terminals and CSV exports people read them in;
  - datetimes near the ends of Python's range: converting them to UTC overflows (year 1 at +08:00).
These types refuse such values at validation, with the field and the reason, before they reach a batch.
`Line` is for one-line values (names, ids, phones); `Text` also allows tab, line feed and carriage return.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_NOT_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

# Instants the system accepts from outside: after the Unix epoch, before 2200.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _refuse_characters(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise PydanticCustomError(
                "unstorable_character",
                "contains U+{code} at character {position}, which {what} may not hold"
                " (control characters, NUL, lone surrogates); remove it",
                {"code": f"{ord(found.group()):04X}", "position": found.start(), "what": what},
            )
        return value

    return AfterValidator(check)


def _in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise PydanticCustomError(
            "instant_out_of_range",
            "must be between {earliest} and {latest}",
            {"earliest": EARLIEST.date().isoformat(), "latest": LATEST.date().isoformat()},
        )
    return value


# Patterns for what OpenAPI should show as one (headers and paths, where a type of ours cannot go):
# a unit's code (city-5101, dept-housing, office-supervision), and one line of text (who acts, X-Operator).
UNIT_CODE = r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$"
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"

Text = Annotated[str, _refuse_characters(_NOT_TEXT, "text")]
Line = Annotated[str, _refuse_characters(_NOT_LINE, "a one-line value")]
Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
