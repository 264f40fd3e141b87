"""The personal-data checker of the integration tiers (tests/personal_data.py) must be able to fail: personal
data handed to a log call is reported, wherever in the record it is and whatever a formatter would make of
it; an ordinary log line is not."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests import factories
from tests.personal_data import People, RawLogCapture, capture_logs, log_leaks, span_leaks
from xinfang_shared.logging import JsonFormatter


@pytest.fixture
def log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.personal-data-capture")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # whatever the root logger's level is in this run
    yield logger
    logger.setLevel(level)


@pytest.fixture
def people() -> People:
    return People()


def _kinds(capture: RawLogCapture, people: People) -> set[str]:
    return {leak.kind for leak in log_leaks(capture, people)}


def test_the_helpers_remember_every_personal_value_they_generate(people: People) -> None:
    petitioner = people.petitioner()
    representative = people.person()
    body = factories.submission(petitioner=petitioner, representatives=[representative, people.person()])
    given = {"name": "代表" + "王某某", "id_number": factories.id_number(), "phone": factories.mobile()}
    body["representatives"].append(given)
    people.record_submission(body)
    assert people.kinds() == {"name", "id_number", "phone", "address", "email"}
    for person in [petitioner, representative, given]:
        for value in person.values():
            assert value in people.values
    assert len(people) == 5 + 3 + 3 + 3


@pytest.mark.parametrize("kind", ["name", "id_number", "phone", "address", "email"])
def test_a_personal_value_in_the_message_is_reported(log: logging.Logger, people: People, kind: str) -> None:
    secret = people.petitioner()[kind]
    with capture_logs() as capture:
        log.info("registered for %s", secret)
    assert _kinds(capture, people) == {kind}
    assert all(secret not in str(leak) for leak in log_leaks(capture, people)), "reports never show the value"


def test_a_name_in_an_extra_field_or_an_exception_is_reported(log: logging.Logger, people: People) -> None:
    person = people.petitioner()
    with capture_logs() as capture:
        log.warning("batch failed", extra={"petitioner": {"who": [person["name"]]}})
        try:
            raise ValueError(f"bad record for {person['address']}")
        except ValueError:
            log.exception("could not register")
        log.error("raw input", extra={"raw": person["email"].encode()})
    places = {leak.where for leak in log_leaks(capture, people)}
    assert any("extra:petitioner" in p for p in places), places
    assert any("exc_info" in p for p in places), places
    assert any("extra:raw" in p for p in places), places
    assert _kinds(capture, people) == {"name", "address", "email"}


def test_what_the_redacting_formatter_hides_is_still_reported(log: logging.Logger, people: People) -> None:
    """The reason to look at raw records: the formatted line has the ID number and phone masked, so a check
    of the log output passes although they reached the log call."""
    person = people.person()
    out = io.StringIO()
    formatted = logging.StreamHandler(out)
    formatted.setFormatter(JsonFormatter("test"))
    log.addHandler(formatted)
    try:
        with capture_logs() as capture:
            log.info("petitioner %s phone %s", person["id_number"], person["phone"])
    finally:
        log.removeHandler(formatted)
    assert person["id_number"] not in out.getvalue() and person["phone"] not in out.getvalue()
    assert _kinds(capture, people) == {"id_number", "phone"}


def test_identifiers_and_short_values_are_not_reported(log: logging.Logger, people: People) -> None:
    people.petitioner()
    people.add("name", "x")  # too short to track: invalid-input tests use such names
    with capture_logs() as capture:
        log.info("channel batch", extra={"records": 3, "matter_id": "3f2b8c1e-9d4a-4c51-8f0e-1a2b3c4d5e6f"})
        log.info("x marks the spot")
    assert len(capture.captured) == 2
    assert log_leaks(capture, people) == []


def test_the_capture_is_removed_afterwards(log: logging.Logger, people: People) -> None:
    with capture_logs() as capture:
        pass
    log.info("after %s", people.person()["name"])
    assert capture.captured == []
    assert capture not in logging.getLogger().handlers


def test_a_personal_value_in_a_span_is_reported(people: People) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    person = people.petitioner()
    with tracer.start_as_current_span("register") as span:
        span.set_attribute("messaging.kafka.message.key", "ext-1")
    with tracer.start_as_current_span("lookup") as span:
        span.add_event("found", {"who": person["phone"]})
    assert [str(leak) for leak in span_leaks(exporter.get_finished_spans(), people)] == [
        "phone in span 'lookup' event 'found' who"
    ]
