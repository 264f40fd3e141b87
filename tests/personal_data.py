"""Keeping personal data out of logs and spans, checked on what the code hands to logging, not on what a
formatter made of it.

- `People` generates petitioners and representatives (names, ID numbers, phones, addresses, e-mail
  addresses) and remembers every value it generated or saw in a submission, with its kind.
- `RawLogCapture` is a `logging.Handler` for the root logger that keeps every `LogRecord` as it arrives,
  before any formatter or redaction runs: its `msg`, `args`, `getMessage()`, the formatted exception and
  every other attribute in `record.__dict__` (what `extra=` put there).
- `log_leaks` / `span_leaks` say where any remembered value turned up (kind and place, never the value).

The redacting formatters of xinfang_shared.logging mask ID numbers and phones in what they print; a check
of their output therefore cannot see an ID number that reached a log call. This one can.
"""

from __future__ import annotations

import logging
import random
import traceback
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests import factories

# Values shorter than this are not tracked: a name like "x" (tests of invalid input) is found everywhere.
MIN_TRACKED = 4
PERSONAL_FIELDS = ("name", "id_number", "phone", "address", "email")


class People:
    """Every personal value the tests used, value → kind ("name", "id_number", "phone", ...)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.values)

    def kinds(self) -> set[str]:
        return set(self.values.values())

    def add(self, kind: str, value: object) -> None:
        if isinstance(value, str) and len(value) >= MIN_TRACKED:
            self.values[value] = kind

    def person(self, rng: random.Random | None = None) -> dict[str, str]:
        """A representative (a contract `Person`): name, ID number, phone, each unique to this call."""
        rng = rng or random.Random()
        tag = uuid.uuid4().hex[:6]
        p = {"name": f"测试{tag}", "id_number": factories.id_number(rng), "phone": factories.mobile(rng)}
        self.record_person(p)
        return p

    def petitioner(self, rng: random.Random | None = None) -> dict[str, str]:
        """A petitioner: a person with a postal address and an e-mail address of their own."""
        p = self.person(rng)
        tag = uuid.uuid4().hex[:8]
        p["address"] = f"四川省成都市锦江区测试路{int(tag[:4], 16)}号{tag[4:]}室"
        p["email"] = f"petitioner.{tag}@example.cn"
        self.record_person(p)
        return p

    def record_person(self, person: Mapping[str, Any] | None) -> None:
        if isinstance(person, Mapping):
            for kind in PERSONAL_FIELDS:
                self.add(kind, person.get(kind))

    def record_submission(self, body: Mapping[str, Any]) -> None:
        """Remember every personal value in a submission (or registered event) body: its petitioner and its
        representatives, however they got there (generated here, or given by the test)."""
        self.record_person(body.get("petitioner"))
        for representative in body.get("representatives") or ():
            self.record_person(representative)


# ---------------------------------------------------------------------------------------------- logs


def _texts(value: Any, depth: int = 0) -> Iterator[str]:
    """Every piece of text `value` shows: strings as they are, bytes decoded, containers walked, anything
    else through str() and repr() (a model's repr, an exception's message)."""
    if depth > 6:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value).decode("utf-8", errors="replace")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _texts(k, depth + 1)
            yield from _texts(v, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _texts(v, depth + 1)
    elif value is None or isinstance(value, bool | int | float):
        return
    else:
        for show in (str, repr):
            try:
                yield show(value)
            except Exception:  # an object that cannot show itself shows nothing
                continue
        if isinstance(value, BaseException):
            yield from _texts(value.args, depth + 1)


@dataclass
class Captured:
    """One log record as the code made it, and its text per place, taken when it was logged."""

    record: logging.LogRecord
    texts: dict[str, list[str]] = field(default_factory=dict)  # place ("msg", "args", "extra:x") → texts


def _snapshot(record: logging.LogRecord) -> Captured:
    texts: dict[str, list[str]] = {"msg": list(_texts(record.msg)), "args": list(_texts(record.args))}
    try:
        texts["message"] = [record.getMessage()]
    except Exception as exc:  # a broken format string is a bug elsewhere: keep what there is
        texts["message"] = [f"<getMessage failed: {exc!r}>"]
    if record.exc_info and record.exc_info[1] is not None:
        raised = record.exc_info[1]
        texts["exc_info"] = ["".join(traceback.format_exception(raised)), *_texts(raised)]
    if record.exc_text:
        texts["exc_text"] = [record.exc_text]
    if record.stack_info:
        texts["stack_info"] = [record.stack_info]
    for key, value in vars(record).items():
        if key not in ("msg", "args", "exc_info", "exc_text", "stack_info"):
            texts[f"extra:{key}"] = list(_texts(value))
    return Captured(record, texts)


class RawLogCapture(logging.Handler):
    """Keeps every record reaching the root logger, before any formatting (level NOTSET: all of them;
    loggers' own levels still decide what is logged at all)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.captured: list[Captured] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.captured.append(_snapshot(record))

    @property
    def records(self) -> list[logging.LogRecord]:
        return [c.record for c in self.captured]

    def messages(self) -> list[str]:
        return [m for c in self.captured for m in c.texts["message"]]


@contextmanager
def capture_logs() -> Iterator[RawLogCapture]:
    """Install a RawLogCapture first among the root logger's handlers (before any that formats or filters),
    for the duration. `configure_logging` replaces only its own handler, so a service started meanwhile
    leaves it in place."""
    capture = RawLogCapture()
    root = logging.getLogger()
    root.handlers.insert(0, capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)


@dataclass(frozen=True)
class Leak:
    kind: str  # of personal value: name, id_number, ...
    where: str  # logger and place in the record, or span and attribute

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}"


def _find(people: People, places: Iterable[tuple[str, str]]) -> list[Leak]:
    found = list(places)
    everything = "\0".join(text for _, text in found)
    present = {value: kind for value, kind in people.values.items() if value in everything}  # one scan each
    leaks = {Leak(kind, where) for where, text in found for value, kind in present.items() if value in text}
    return sorted(leaks, key=str)


def log_leaks(capture: RawLogCapture, people: People) -> list[Leak]:
    """Where (logger, place in the record) any of `people`'s values reached a log call."""
    return _find(
        people,
        (
            (f"log {c.record.name} ({c.record.levelname}) {place}", text)
            for c in capture.captured
            for place, texts in c.texts.items()
            for text in texts
        ),
    )


# --------------------------------------------------------------------------------------------- spans


def _span_places(span: Any) -> Iterator[tuple[str, str]]:
    name = getattr(span, "name", "?")
    yield f"span {name!r} name", str(name)
    for key, value in dict(span.attributes or {}).items():
        for text in _texts(value):
            yield f"span {name!r} attribute {key}", text
    for event in span.events:
        for key, value in dict(event.attributes or {}).items():
            for text in _texts(value):
                yield f"span {name!r} event {event.name!r} {key}", text
    description = getattr(span.status, "description", None)
    if description:
        yield f"span {name!r} status", str(description)


def span_leaks(spans: Iterable[Any], people: People) -> list[Leak]:
    """Where any of `people`'s values reached a finished span (name, attributes, events, status)."""
    return _find(people, (place for span in spans for place in _span_places(span)))
