"""The reports' calendar: which month is due when (Beijing time), and what a request without dates covers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from xinfang_shared.service import FieldRefused
from xinfang_stats.figures import Period
from xinfang_stats.report import monthly_due
from xinfang_stats.report_api import asked_period


def test_the_previous_month_is_due_from_eight_on_the_first_beijing_time() -> None:
    # 1 December 07:59 Beijing (23:59 UTC the day before): nothing is due yet; 08:00: November.
    assert monthly_due(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) is None
    assert monthly_due(datetime(2026, 12, 1, 0, 0, tzinfo=UTC)) == Period(date(2026, 11, 1), date(2026, 11, 30))
    # Any later day of the month: still November (an instance down on the 1st catches up).
    assert monthly_due(datetime(2026, 12, 20, 3, 0, tzinfo=UTC)) == Period(date(2026, 11, 1), date(2026, 11, 30))
    assert monthly_due(datetime(2026, 3, 1, 0, 0, tzinfo=UTC)) == Period(date(2026, 2, 1), date(2026, 2, 28))


def test_a_request_without_dates_is_last_month_and_a_range_is_checked() -> None:
    today = date(2026, 3, 15)
    assert asked_period(None, None, today) == Period(date(2026, 2, 1), date(2026, 2, 28))
    assert asked_period(date(2026, 1, 1), date(2026, 3, 31), today).days == 90
    assert asked_period(date(2026, 1, 1), None, today) == Period(date(2026, 1, 1), date(2026, 1, 31))
    with pytest.raises(FieldRefused):
        asked_period(date(2026, 3, 2), date(2026, 3, 1), today)
    with pytest.raises(FieldRefused):
        asked_period(date(2020, 1, 1), date(2026, 1, 1), today)
