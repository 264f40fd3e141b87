"""The statutory deadline rules (shared by every service) and supervision's stage arithmetic, without a broker
or a database. Due times follow the Civil Code's counting (xinfang_shared/periods.py): each is 24:00 Beijing
time (16:00 UTC) of its last day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xinfang_shared.contracts.reference import DeadlineType
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.workdays import CHINA
from xinfang_supervision.ledger import CLOSED, _stage_after_move, next_check
from xinfang_supervision.scheduler import progress

RULES = DeadlineRules.default()
D = DeadlineType
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # Monday 2 March 2026, 17:30 in Beijing
DEFAULT_TEXT = resources.files("xinfang_shared").joinpath("data/deadline-rules.toml").read_text(encoding="utf-8")


def _end_of(day: str) -> datetime:
    """24:00 Beijing time of `day`."""
    return datetime.fromisoformat(day).replace(hour=16, tzinfo=UTC)


def test_the_statutory_figures_are_the_defaults_counted_as_the_law_counts() -> None:
    # 15 days from Monday 2 March: counting starts on the 3rd, the last day is Tuesday 17 March.
    assert RULES[D.ROUTING].due(T0) == _end_of("2026-03-17")
    assert RULES[D.ACCEPTANCE].due(T0) == _end_of("2026-03-17")
    # 60 days: the last day would be 1 May, Labour Day (1-5 May off): it moves to Wednesday 6 May.
    assert RULES[D.HANDLING].due(T0) == _end_of("2026-05-06")
    assert (RULES[D.HANDLING].max_extensions, RULES[D.HANDLING].max_extension_days) == (1, 30)
    assert RULES[D.REVIEW].due(T0) == _end_of("2026-04-01")
    assert RULES[D.RE_REVIEW].pausable and not RULES[D.HANDLING].pausable
    assert not RULES[D.OBJECTION].obligation
    # The petitioner's windows to ask one level up: 30 days from the opinion, never a duty.
    for window in (D.REVIEW, D.RE_REVIEW):
        rule = RULES.request_window(window)
        assert rule.due(T0) == _end_of("2026-04-01") and not rule.obligation


def test_due_soon_is_three_days_before_or_a_fifth_of_a_shorter_period_and_escalation_a_second_period() -> None:
    rule = RULES[D.HANDLING]
    due = rule.due(T0)
    assert rule.warn_at(T0, due) == due - timedelta(days=3)
    # A 10-day period: 20% is 2 days, shorter than 3.
    short_due = T0 + timedelta(days=10)
    assert rule.warn_at(T0, short_due) == short_due - timedelta(days=2)
    # Seven days more, counted on from the last day (6 May): Wednesday 13 May.
    assert rule.escalate_at(due) == _end_of("2026-05-13")
    assert RULES[D.OBJECTION].warn_at(T0, due) is None and RULES[D.OBJECTION].escalate_at(due) is None


def test_an_extension_is_counted_on_from_the_last_day() -> None:
    rule = RULES[D.HANDLING]
    assert rule.extended(rule.due(T0), 20) == _end_of("2026-05-26")


def test_the_objection_window_counts_working_days_over_national_day_and_its_adjusted_saturday() -> None:
    # Transferred Tuesday 2026-09-29, 10:00 in China. Working days after it: Wed 30 Sep; 1-7 Oct are off;
    # Thu 8, Fri 9, Sat 10 Oct (调休: a working day), then Mon 12 Oct: the window ends at 24:00 that day.
    start = datetime(2026, 9, 29, 10, 0, tzinfo=CHINA)
    assert RULES[D.OBJECTION].due(start) == _end_of("2026-10-12")


def test_a_clock_far_ahead_reaches_every_stage_in_order_each_at_its_own_time() -> None:
    rule = RULES[D.ACCEPTANCE]
    due = rule.due(T0)
    warn, escalate = rule.warn_at(T0, due), rule.escalate_at(due)
    moved = progress("set", warn, due, escalate, T0 + timedelta(days=30))
    assert moved.reached == [("due-soon", warn), ("overdue", due), ("escalated", escalate)]
    assert moved.stage == "escalated" and moved.open
    assert next_check(moved.stage, warn, due, escalate) is None
    # Between thresholds: one step.
    assert progress("set", warn, due, escalate, due - timedelta(hours=1)).reached == [("due-soon", warn)]
    assert progress("due-soon", warn, due, escalate, due - timedelta(hours=1)).reached == []


def test_a_window_lapses_quietly() -> None:
    rule = RULES[D.OBJECTION]
    due = rule.due(T0)
    assert progress("set", None, due, None, due - timedelta(seconds=1)).reached == []
    lapsed = progress("set", None, due, None, due)
    assert lapsed.reached == [(CLOSED, due)] and not lapsed.open


def test_a_due_time_moved_later_warns_again_only_before_the_new_warning_time() -> None:
    due = T0 + timedelta(days=60)
    warn, escalate = due - timedelta(days=3), due + timedelta(days=7)
    now = due - timedelta(days=1)  # already warned
    assert _stage_after_move("due-soon", now, warn + timedelta(days=20), due + timedelta(days=20), escalate) == (
        "set",
        warn + timedelta(days=20),
    )
    assert _stage_after_move("due-soon", now, warn, due + timedelta(hours=2), escalate) == (
        "due-soon",
        due + timedelta(hours=2),
    )


@given(
    stage=st.sampled_from(["set", "due-soon", "overdue", "escalated"]),
    days=st.integers(min_value=1, max_value=120),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=200)),
)
def test_progress_never_skips_a_stage_nor_goes_back(stage: str, days: int, later: timedelta) -> None:
    order = ["set", "due-soon", "overdue", "escalated"]
    due = T0 + timedelta(days=days)
    warn, escalate = due - timedelta(days=min(3, days / 5)), due + timedelta(days=7)
    moved = progress(stage, warn, due, escalate, T0 + later)
    reached = [s for s, _ in moved.reached]
    assert reached == order[order.index(stage) + 1 : order.index(stage) + 1 + len(reached)]
    times = [t for _, t in moved.reached]
    assert times == sorted(times) and all(t <= T0 + later for t in times)


def _rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT_TEXT + text, encoding="utf-8")
    return path


def test_a_bad_rules_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown deadline 'hearing'"):
        DeadlineRules.load(_rules_file(tmp_path, "\n[deadlines.hearing]\nlength = 3\n"))
    misspelt = tmp_path / "misspelt.toml"
    misspelt.write_text(DEFAULT_TEXT.replace("length = 60", "lenght = 60"))
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lenght'\], missing \['length'\]"):
        DeadlineRules.load(misspelt)
    only_some = tmp_path / "some.toml"
    defaults = DEFAULT_TEXT.split("[deadlines.")[0]
    only_some.write_text(defaults + "[deadlines.routing]\nlength = 15\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no rule for deadline"):
        DeadlineRules.load(only_some)


def test_every_figure_is_configurable(tmp_path: Path) -> None:
    text = DEFAULT_TEXT.replace(
        "[deadlines.handling]\nlength = 60", '[deadlines.handling]\nlength = 10\ncounted_in = "working-days"'
    )
    path = tmp_path / "simplified.toml"
    path.write_text(text, encoding="utf-8")
    handling = DeadlineRules.load(path)[D.HANDLING]
    # Ten working days from Monday 2 March 2026: Tuesday 3 to Monday 16 March, ending at 24:00 that day.
    assert handling.due(T0) == _end_of("2026-03-16")


def test_the_request_windows_must_be_both_there_and_never_a_duty(tmp_path: Path) -> None:
    without = DEFAULT_TEXT.split("[request_windows.review]")[0]
    with pytest.raises(ValueError, match="request_windows must be exactly"):
        DeadlineRules.loads(without)
    duty = DEFAULT_TEXT.replace(
        "[request_windows.re-review]\nlength = 30\nobligation = false", "[request_windows.re-review]\nlength = 30"
    )
    with pytest.raises(ValueError, match="not an obligation"):
        DeadlineRules.loads(duty)


def test_every_service_reads_the_file_deadline_rules_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xinfang_shared.settings import ServiceSettings

    path = tmp_path / "rules.toml"
    path.write_text(DEFAULT_TEXT.replace("[deadlines.acceptance]\nlength = 15", "[deadlines.acceptance]\nlength = 10"))
    monkeypatch.setenv("DEADLINE_RULES_FILE", str(path))
    settings = ServiceSettings(_env_file=None, environment="test")  # type: ignore[call-arg]
    assert settings.deadline_rules_file == path
    assert DeadlineRules.load(settings.deadline_rules_file)[D.ACCEPTANCE].due(T0) == _end_of("2026-03-12")
