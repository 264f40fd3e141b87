"""The surge detector of the stats service (`xinfang_stats.surge`): the test on counts and the alert state machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from xinfang_shared.workdays import CHINA, WorkingCalendar
from xinfang_stats import surge_eval
from xinfang_stats.surge import (
    HourlyCounts,
    Series,
    SeriesState,
    SurgeConfig,
    SurgeDetector,
    beijing_hour,
    observe_all,
    window_hours,
)

HOUR = timedelta(hours=1)
START = datetime(2025, 3, 3, tzinfo=CHINA)  # a Monday, weeks away from any holiday
CITY = Series.region("5134")
LABOR = Series.category("labor")
PT1H = SurgeConfig(windows=("PT1H",))


def never(_: date) -> bool:
    return False


def flat(days: int, per_hour: int) -> np.ndarray:
    return np.full(24 * days, per_hour, dtype=np.int64)


def hours(first: datetime, count: int) -> list[datetime]:
    return [first + k * HOUR for k in range(count)]


def actions(detector: SurgeDetector, counts: HourlyCounts, checked: list[datetime]) -> list[str]:
    state, seen = SeriesState(), []
    for hour in checked:
        decision = detector.observe(CITY, hour, counts, state)
        state = decision.state
        seen.append(decision.action)
    return seen


# --- the test on counts -----------------------------------------------------------------------------------------


def test_a_calm_over_dispersed_series_raises_almost_no_alert_over_months() -> None:
    rng = np.random.default_rng(7)
    simulated = surge_eval.simulate(rng, rate=20, days=surge_eval.WARM_UP_DAYS + 150)
    counts = HourlyCounts(datetime(2025, 1, 1, tzinfo=CHINA), simulated.counts)
    checked = [counts.start + k * HOUR for k in range(24 * surge_eval.WARM_UP_DAYS, len(counts))]
    working = WorkingCalendar.default().is_working_day

    def opened(config: SurgeConfig) -> int:
        detector = SurgeDetector(surge_eval.is_holiday, config, is_working_day=working)
        events, _ = observe_all(detector, LABOR, counts, SeriesState(), checked)
        return sum(event.action == "open" for event in events)

    assert opened(SurgeConfig()) <= 2  # 150 series-days, 3600 hourly checks of two windows
    # the same data at a careless level alarms all the time: the bound above is what keeps it quiet
    assert opened(SurgeConfig(alpha=0.01, close_alpha=0.05, min_observed=1, min_ratio=1.0)) >= 20


def test_a_threefold_surge_at_a_moderate_rate_is_detected_within_a_few_hours() -> None:
    rng = np.random.default_rng(11)
    days = 40
    profile = np.tile(surge_eval.WORKING_PROFILE, days)
    means = 40.0 * profile  # 40 matters a day, office hours
    counts = rng.negative_binomial(20, 20 / (20 + means)).astype(np.int64)
    surge_start = 24 * 35 + 9  # 09:00 on a Monday, for 6 hours
    span = slice(surge_start, surge_start + 6)
    counts[span] += rng.negative_binomial(20, 20 / (20 + 2 * means[span]))
    series = HourlyCounts(START, counts)
    detector = SurgeDetector(never, SurgeConfig(lookback_days=28))
    start = START + surge_start * HOUR
    events, _ = observe_all(detector, LABOR, series, SeriesState(), hours(start, 6))
    assert events, "the surge was not detected"
    first = events[0]
    assert first.action == "open"
    assert first.at - start <= 3 * HOUR
    assert first.bound is not None and first.observed > first.bound
    assert first.observed >= 2 * first.baseline
    assert first.method.endswith("28 baseline days, p<0.0001")
    # and before it, the same hours of the calm day before raised nothing
    quiet, _ = observe_all(detector, LABOR, series, SeriesState(), hours(start - 24 * HOUR, 6))
    assert quiet == []


def test_the_negative_binomial_falls_back_to_poisson_when_the_variance_is_not_above_the_mean() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(29, 4)
    counts[-1] = 14
    check = detector.check(HourlyCounts(START, counts), START + (len(counts) - 1) * HOUR, "PT1H")
    assert (check.model, check.mean, check.variance, check.days) == ("Poisson", 4.0, 4.0, 28)
    assert check.p_value == pytest.approx(stats.poisson.sf(13, 4.0))
    assert check.upper_bound(0.0001) == stats.poisson.ppf(1 - 0.0001, 4.0) == 13
    assert check.method == "Poisson, 28 baseline days, p<0.0001"
    assert check.status == "alarm"


def test_an_over_dispersed_baseline_gets_the_negative_binomial_of_its_moments() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = np.tile(np.repeat([1, 9], 24), 14).astype(np.int64)  # days of 1 and 9 an hour: mean 5, variance 16
    counts = np.append(counts, 0)
    counts[-1] = 20
    check = detector.check(HourlyCounts(START, counts), START + (len(counts) - 1) * HOUR, "PT1H")
    variance = 16 * 28 / 27 * (1 + 1 / 28)  # the sample variance, and the mean estimated from 28 days
    assert (check.model, check.mean, check.days) == ("negative binomial", 5.0, 28)
    assert check.variance == pytest.approx(variance)
    size, p = 25 / (variance - 5), 5 / variance
    assert check.p_value == pytest.approx(stats.nbinom.sf(19, size, p))
    assert check.upper_bound(0.0001) == stats.nbinom.ppf(1 - 0.0001, size, p)
    assert check.status == "elevated"  # p ≈ 0.003: above the closing bound, not an alarm
    assert check.p_value > stats.poisson.sf(19, 5.0) * 100  # the Poisson would have alarmed


def test_tiny_counts_never_alarm_however_unlikely() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(29, 0)
    counts[-1] = 4  # p = 0 against a baseline of nothing, but under the minimum of 5
    check = detector.check(HourlyCounts(START, counts), START + (len(counts) - 1) * HOUR, "PT1H")
    assert check.p_value == 0.0
    assert check.status == "elevated"
    counts[-1] = 5
    assert detector.check(HourlyCounts(START, counts), START + (len(counts) - 1) * HOUR, "PT1H").status == "alarm"


def test_a_rise_under_twice_the_baseline_does_not_alarm_even_when_significant() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(29, 100)
    counts[-1] = 190  # Poisson(100): p ~ 1e-15, but under 2x
    check = detector.check(HourlyCounts(START, counts), START + (len(counts) - 1) * HOUR, "PT1H")
    assert check.p_value is not None and check.p_value < 1e-12
    assert check.status == "elevated"


# --- cold start ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("history_days", [0, 6])
def test_the_cold_start_floor_alerts_at_50_in_one_hour_and_not_at_49(history_days: int) -> None:
    detector = SurgeDetector(never)
    for last, action in ((49, "none"), (50, "open")):
        counts = np.append(flat(history_days, 3), [last])
        decision = detector.observe(CITY, START + 24 * history_days * HOUR, HourlyCounts(START, counts), SeriesState())
        assert (decision.action, decision.observed, decision.window) == (action, last, "PT1H")
        assert decision.method == f"cold-start floor 50/h ({history_days} baseline days, 7 needed)"
        assert decision.p_value is None


def test_with_seven_baseline_days_the_test_replaces_the_floor() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = np.append(flat(7, 3), [49])
    decision = detector.observe(CITY, START + 24 * 7 * HOUR, HourlyCounts(START, counts), SeriesState())
    assert decision.action == "open"
    assert decision.method == "Poisson, 7 baseline days, p<0.0001"
    assert decision.baseline == 3.0


# --- one alert per series ---------------------------------------------------------------------------------------


def test_one_open_alert_per_series_closing_when_the_rate_is_back() -> None:
    detector = SurgeDetector(never, SurgeConfig(windows=("PT1H", "PT3H")))
    counts = flat(31, 4)
    day = 24 * 29  # the day checked: 29 days of 4 an hour before it
    counts[day + 9] = 30  # a surge at 09:00
    counts[day + 11 : day + 13] = 40  # and another at 11:00 and 12:00, while the first is open
    counts[day + 20] = 30  # a third, long after the first closed
    series = HourlyCounts(START, counts)
    state, log = SeriesState(), []
    for hour in hours(START + day * HOUR, 24):
        decision = detector.observe(CITY, hour, series, state)
        state = decision.state
        if decision.action != "none":
            log.append((decision.action, decision.hour.hour, decision.window, decision.alert_id))
    (opened, first_id), (closed, close_id) = (log[0][:2], log[0][3]), (log[1][:2], log[1][3])
    assert opened == ("open", 9) and log[0][2] == "PT1H"
    # 12:00 is an alarm again (PT1H), the 3-hour window holds it to 14:00; calm at 15, 16, 17: closes at 17:00
    assert closed == ("close", 17)
    assert close_id == first_id
    assert log[2][:2] == ("open", 20) and log[2][3] != first_id
    assert len(log) == 3


def test_an_alert_closes_after_three_calm_checks_and_a_relapse_resets_the_count() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(30, 4)
    day = 24 * 29
    counts[day + 2] = 30
    counts[day + 4] = 10  # elevated (p < 0.05), not an alarm: keeps the alert open
    series = HourlyCounts(START, counts)
    seen = actions(detector, series, hours(START + day * HOUR, 12))
    assert seen == ["none", "none", "open", "none", "none", "none", "none", "close", "none", "none", "none", "none"]


def test_the_alert_id_is_the_same_when_the_same_hours_are_replayed() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(30, 4)
    counts[-5] = 30
    series = HourlyCounts(START, counts)
    first = detector.observe(CITY, START + (len(counts) - 5) * HOUR, series, SeriesState())
    again = detector.observe(CITY, START + (len(counts) - 5) * HOUR, series, SeriesState())
    other = detector.observe(LABOR, START + (len(counts) - 5) * HOUR, series, SeriesState())
    assert first.action == again.action == other.action == "open"
    assert first.alert_id == again.alert_id != other.alert_id


def test_a_repeated_or_earlier_hour_changes_nothing() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(30, 4)
    counts[-3] = 30
    series = HourlyCounts(START, counts)
    hour = START + (len(counts) - 3) * HOUR
    opened = detector.observe(CITY, hour, series, SeriesState())
    assert opened.action == "open"
    for again in (hour, hour - HOUR, hour - 24 * HOUR):
        repeat = detector.observe(CITY, again, series, opened.state)
        assert repeat.action == "none"
        assert repeat.state == opened.state
        assert repeat.alert_id == opened.alert_id


def test_the_state_round_trips_through_json() -> None:
    detector = SurgeDetector(never, PT1H)
    counts = flat(30, 4)
    counts[-2] = 30
    opened = detector.observe(CITY, START + (len(counts) - 2) * HOUR, HourlyCounts(START, counts), SeriesState())
    stored = json.loads(json.dumps(opened.state.to_dict()))
    assert SeriesState.from_dict(stored) == opened.state
    assert SeriesState.from_dict(SeriesState().to_dict()) == SeriesState()
    assert opened.state.is_open and not SeriesState().is_open


# --- baselines: holidays, kinds of day, Beijing hours --------------------------------------------------------------


def test_a_holiday_spike_in_the_history_does_not_inflate_an_ordinary_days_baseline() -> None:
    counts = flat(30, 2)
    spike_day = START.date() + timedelta(days=26)
    counts[24 * 26 + 10] = 60  # a holiday rush at 10:00, three days before the day checked
    counts[24 * 29 + 10] = 12
    series = HourlyCounts(START, counts)
    hour = START + (24 * 29 + 10) * HOUR

    def holiday(day: date) -> bool:
        return day == spike_day

    left_out = SurgeDetector(holiday, PT1H).observe(CITY, hour, series, SeriesState())
    assert (left_out.action, left_out.baseline, left_out.method) == ("open", 2.0, "Poisson, 28 baseline days, p<0.0001")
    kept = SurgeDetector(never, PT1H).observe(CITY, hour, series, SeriesState())
    assert kept.action == "none"
    assert kept.baseline == pytest.approx((27 * 2 + 60) / 28)
    assert kept.method.startswith("negative binomial")


def test_a_window_crossing_midnight_leaves_out_a_holiday_on_either_day() -> None:
    series = HourlyCounts(START, flat(32, 2))
    hour = START + (24 * 31 + 1) * HOUR  # 01:00 on day 31: the three hours from 23:00 the day before
    holiday = START.date() + timedelta(days=28)
    config = SurgeConfig(windows=("PT3H",), max_days=30)
    assert SurgeDetector(never, config).check(series, hour, "PT3H").days == 30

    def is_holiday(day: date) -> bool:
        return day == holiday

    check = SurgeDetector(is_holiday, config).check(series, hour, "PT3H")
    # out: the span from day 27 to 01:00 on day 28 (ends on the holiday) and the one from day 28 (starts on it)
    assert (check.days, check.mean) == (28, 6.0)


def test_with_working_days_a_weekend_is_compared_with_weekends() -> None:
    start = START  # a Monday; the calendar here is Monday to Friday
    days = 55
    counts = np.zeros(24 * days, dtype=np.int64)
    for offset in range(days):
        counts[24 * offset + 10] = 10 if (start.date() + timedelta(days=offset)).weekday() < 5 else 2
    saturday = 54
    assert (start.date() + timedelta(days=saturday)).weekday() == 5
    counts[24 * saturday + 10] = 12  # a working day's level, six times an ordinary Saturday's
    series = HourlyCounts(start, counts)
    hour = start + (24 * saturday + 10) * HOUR
    alike = SurgeDetector(never, PT1H, is_working_day=lambda day: day.weekday() < 5).observe(
        CITY, hour, series, SeriesState()
    )
    assert (alike.action, alike.baseline) == ("open", 2.0)
    assert alike.method == "Poisson, 14 rest-day baseline days, p<0.0001"  # 7 weeks of Saturdays and Sundays
    mixed = SurgeDetector(never, PT1H).observe(CITY, hour, series, SeriesState())
    assert mixed.action == "none"
    assert mixed.baseline > 7


def test_hours_are_beijing_hours() -> None:
    utc = datetime(2025, 3, 31, 16, 30, tzinfo=UTC)  # 00:30 on 1 April in Beijing
    assert beijing_hour(utc) == datetime(2025, 4, 1, 0, tzinfo=CHINA)
    with pytest.raises(ValueError, match="naive"):
        beijing_hour(datetime(2025, 4, 1))  # noqa: DTZ001

    # counts from UTC rows: every Beijing midnight hour has 3, and 31 March's (UTC: 30 March, 16:00) has 90
    rows = {datetime(2025, 3, 1, 16, tzinfo=UTC) + timedelta(days=k): 3 for k in range(30)}
    rows[datetime(2025, 3, 30, 16, tzinfo=UTC)] = 90
    rows[datetime(2025, 3, 31, 16, 59, tzinfo=UTC)] = 12  # the hour checked: Beijing 1 April, 00:00
    series = HourlyCounts.from_mapping(
        rows, start=datetime(2025, 3, 2, tzinfo=CHINA), end=datetime(2025, 4, 1, 1, tzinfo=CHINA)
    )
    assert series[datetime(2025, 3, 31, 0, 15, tzinfo=CHINA)] == 90
    assert series[datetime(2025, 3, 30, 23, tzinfo=CHINA)] == 0

    def holiday_on(day: date) -> Callable[[date], bool]:
        return lambda other: other == day

    beijing = SurgeDetector(holiday_on(date(2025, 3, 31)), PT1H).observe(CITY, utc, series, SeriesState())
    assert beijing.hour == datetime(2025, 4, 1, 0, tzinfo=CHINA)
    assert beijing.at == datetime(2025, 3, 31, 17, tzinfo=UTC)
    assert (beijing.action, beijing.observed, beijing.baseline) == ("open", 12, 3.0)  # the rush is left out
    utc_date = SurgeDetector(holiday_on(date(2025, 3, 30)), PT1H).observe(CITY, utc, series, SeriesState())
    assert utc_date.action == "none"  # 30 March is the rush's UTC date, not its Beijing one
    assert utc_date.baseline > 3.0


# --- inputs ----------------------------------------------------------------------------------------------------


def test_inputs_are_checked() -> None:
    assert [window_hours(w) for w in ("PT1H", "PT3H", "PT24H")] == [1, 3, 24]
    for bad in ("PT0H", "PT25H", "P1D", "PT1M", "1H"):
        with pytest.raises(ValueError, match="window"):
            window_hours(bad)
    with pytest.raises(ValueError, match="4-digit"):
        Series.region("513401")
    with pytest.raises(ValueError, match="start of an hour"):
        HourlyCounts(START + timedelta(minutes=5), [1])
    with pytest.raises(ValueError, match="negative"):
        HourlyCounts(START, [1, -1])
    with pytest.raises(ValueError, match="outside"):
        HourlyCounts(START, [1, 2]).index(START + 2 * HOUR)
    with pytest.raises(ValueError, match="outside"):
        HourlyCounts.from_mapping({START + 5 * HOUR: 1}, start=START, end=START + 2 * HOUR)
    with pytest.raises(ValueError, match="alpha"):
        SurgeConfig(alpha=0.1, close_alpha=0.05)
    assert SurgeConfig(windows=("PT24H", "PT1H")).windows == ("PT1H", "PT24H")
