"""The sliding surge detector (`xinfang_stats.surge.SlidingDetector`): windows checked every minute, scaled to
their share of the hourly baseline, the cold-start floor, the CUSUM, one open alert per series, the straggler
bound, and a replay equal to live."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from xinfang_shared.workdays import CHINA
from xinfang_stats.surge import (
    HourlyCounts,
    MinuteCounts,
    Series,
    SlidingConfig,
    SlidingDecision,
    SlidingDetector,
    SlidingState,
    SurgeConfig,
    window_minutes,
)
from xinfang_stats.watch import last_due

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
START = datetime(2025, 3, 3, tzinfo=CHINA)  # a Monday, weeks away from any holiday
CITY = Series.region("5134")


def never(_: date) -> bool:
    return False


def history(days: int, per_hour: int, rng: np.random.Generator) -> np.ndarray:
    """Per-minute counts of `days` days with Poisson `per_hour` matters an hour."""
    return rng.poisson(per_hour / 60, size=1440 * days).astype(np.int64)


def series_of(minutes: np.ndarray) -> tuple[HourlyCounts, MinuteCounts]:
    """The hourly counts of the same matters (whole hours only) and the minute counts."""
    whole = len(minutes) // 60 * 60
    hourly = minutes[:whole].reshape(-1, 60).sum(axis=1)
    padded = np.concatenate([hourly, np.zeros(1 if len(minutes) % 60 else 0, dtype=np.int64)])
    return HourlyCounts(START, padded), MinuteCounts(START, minutes)


def run(
    detector: SlidingDetector, minutes: np.ndarray, first: datetime, last: datetime, state: SlidingState | None = None
) -> tuple[list[SlidingDecision], SlidingState]:
    counts, by_minute = series_of(minutes)
    return detector.observe(CITY, counts, by_minute, state or SlidingState(), first, last)


def at(minute: int) -> datetime:
    return START + minute * MINUTE


# --- cold start: the floor of 50 in the trailing hour ----------------------------------------------------------


@pytest.mark.parametrize("burst", [50, 120])
def test_the_50th_matter_within_an_hour_alerts_at_the_next_minute_boundary_on_a_fresh_series(burst: int) -> None:
    minutes = np.zeros(600, dtype=np.int64)
    minutes[123] = 10  # 02:03: an early group; the rest arrives 40 minutes later, one a second
    arrivals = [163 * 60 + s for s in range(burst - 10)]  # seconds since START
    for second in arrivals:
        minutes[second // 60] += 1
    found, _ = run(SlidingDetector(never), minutes, at(0), at(599))
    opened = [d for d in found if d.action == "open"]
    fiftieth = START + timedelta(seconds=arrivals[39])
    assert len(opened) == 1 and opened[0].window == "PT1H" and "cold-start floor" in opened[0].method
    assert timedelta(0) < opened[0].at - fiftieth <= MINUTE  # the window ending after it holds all 50
    assert opened[0].observed >= 50


def test_49_within_any_hour_raise_nothing_and_the_floor_counts_a_sliding_hour() -> None:
    minutes = np.zeros(600, dtype=np.int64)
    minutes[100:149] = 1  # 49 in 49 minutes
    minutes[300:349] = 1  # and again, 49
    minutes[359] = 1  # the 50th of 300-359 within the hour: alarms (a fixed hour 05:00-06:00 would hold 50 too)
    minutes[400:430] = 1
    minutes[470:490] = 1  # 50 in 90 minutes, never 50 in any 60: nothing
    found, _ = run(SlidingDetector(never), minutes, at(0), at(599))
    assert [(d.action, d.at) for d in found if d.action == "open"] == [("open", at(360))]


# --- the test scaled to the window -------------------------------------------------------------------------------


def test_a_window_is_tested_against_its_share_of_the_hourly_baseline() -> None:
    rng = np.random.default_rng(3)
    minutes = history(30, 60, rng)
    counts, by_minute = series_of(minutes)
    detector = SlidingDetector(never)
    checks = detector.hour_checks(counts, by_minute, START + timedelta(days=29, hours=10))
    assert checks.days == 28 and not checks.cold
    # a quarter of an hour holds a quarter of the hour's 60, wherever it ends; the hour all of it
    assert np.allclose(checks.mean["PT15M"], 15, rtol=0.1) and np.allclose(checks.mean["PT1H"], 60, rtol=0.1)
    assert checks.minute_mean is not None and np.allclose(checks.minute_mean, 1, rtol=0.1)
    # calm data: no window alarms anywhere in the hour
    assert "alarm" not in checks.status["PT15M"] + checks.status["PT1H"]


def test_a_calm_day_raises_nothing_and_a_threefold_hour_alarms_within_its_first_half() -> None:
    rng = np.random.default_rng(5)
    minutes = history(30, 60, rng)
    detector = SlidingDetector(never)
    day = 1440 * 29
    found, _ = run(detector, minutes, at(day), at(day + 1439))
    assert found == []
    surge = 1440 * 29 + 600  # 10:00 of the last day: three times the rate
    minutes[surge : surge + 60] += rng.poisson(2.0, size=60)
    found, _ = run(detector, minutes, at(surge - 120), at(surge + 120))
    opened = [d for d in found if d.action == "open"]
    assert len(opened) == 1 and at(surge) < opened[0].at <= at(surge + 30)  # the hourly watch: at 11:05 at best
    assert opened[0].window == "PT15M" and "baseline days scaled to PT15M" in opened[0].method
    assert opened[0].observed >= 2 * opened[0].baseline


# --- one open alert per series; closing ----------------------------------------------------------------------


def test_one_alert_for_a_long_surge_closed_after_an_hour_of_calm_minutes_and_a_relapse_resets_the_count() -> None:
    rng = np.random.default_rng(9)
    minutes = history(30, 60, rng)
    surge = 1440 * 29 + 540
    minutes[surge : surge + 180] += 4  # three hours at five times the rate
    detector = SlidingDetector(never)
    found, state = run(detector, minutes, at(surge - 60), at(surge + 400))
    assert [d.action for d in found] == ["open", "close"]
    opened, closed = found
    assert opened.alert_id == closed.alert_id and not state.is_open
    # it closes after 60 consecutive calm minutes: the first calm minute comes once the window no longer holds
    # the surge, never before
    assert closed.at >= at(surge + 180) + timedelta(minutes=60)
    minutes[surge + 250 : surge + 255] += 8  # a relapse before an hour of calm: the same alert stays open
    found, _ = run(detector, minutes, at(surge - 60), at(surge + 500))
    assert [d.action for d in found] == ["open", "close"]
    assert found[1].at >= at(surge + 255) + timedelta(minutes=60)


def test_a_checked_minute_is_never_checked_again() -> None:
    rng = np.random.default_rng(1)
    minutes = history(30, 60, rng)
    minutes[1440 * 29 + 600 : 1440 * 29 + 660] += 5
    detector = SlidingDetector(never)
    found, state = run(detector, minutes, at(1440 * 29 + 540), at(1440 * 29 + 620))
    assert [d.action for d in found] == ["open"]
    again, same = run(detector, minutes, at(1440 * 29 + 540), at(1440 * 29 + 620), state)
    assert again == [] and same == state


# --- stragglers: waited for a bounded time --------------------------------------------------------------------


def test_a_window_is_judged_once_the_watermark_is_the_straggler_wait_past_its_end() -> None:
    t = datetime(2026, 12, 7, 10, 30, tzinfo=CHINA)
    assert last_due(t + timedelta(seconds=20), t + HOUR, 20) == t  # the watermark holds it back
    assert last_due(t + timedelta(seconds=19), t + HOUR, 20) == t - MINUTE  # not yet waited long enough
    assert last_due(t + HOUR, t + timedelta(seconds=25), 20) == t  # never past the wall clock


def test_a_straggler_past_the_bound_is_counted_by_the_later_windows_that_hold_it() -> None:
    minutes = np.zeros(600, dtype=np.int64)
    minutes[200:246] = 1  # 46 in the trailing hour at 04:06
    early, state = run(SlidingDetector(never), minutes, at(0), at(250))
    assert early == []
    late = minutes.copy()
    late[240:244] += 1  # four matters of 04:00-04:03 arrive after the windows to 04:10 were judged
    found, _ = run(SlidingDetector(never), late, at(0), at(300), state)
    assert [(d.action, d.at) for d in found] == [("open", at(251))]  # the next window holding them: 50


# --- the CUSUM ------------------------------------------------------------------------------------------------


def test_the_cusum_catches_a_modest_step_the_windows_miss_and_is_held_at_zero_while_open() -> None:
    rng = np.random.default_rng(21)
    minutes = history(30, 30, rng)
    step = 1440 * 29 + 480
    minutes[step : step + 300] += rng.poisson(1.0, size=300)  # three times the rate for five hours
    cusum = SlidingDetector(never, SlidingConfig(detector="cusum", cusum_threshold=12))
    found, state = run(cusum, minutes, at(step - 600), at(step + 300))
    opened = [d for d in found if d.action == "open"]
    assert len(opened) == 1 and at(step) < opened[0].at < at(step + 180)
    assert "Poisson CUSUM" in opened[0].method and opened[0].window == "PT1H"
    assert state.is_open and state.cusum == 0.0
    calm = history(30, 30, np.random.default_rng(22))
    found, state = run(cusum, calm, at(1440 * 29), at(1440 * 30 - 1))
    assert found == [] and state.cusum < 12


# --- replay equals live -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", ["scaled", "cusum", "both"])
def test_checking_in_rounds_of_any_size_gives_what_one_catch_up_gives(detector: str) -> None:
    rng = np.random.default_rng(13)
    minutes = history(30, 40, rng)
    for start in (1440 * 29 + 300, 1440 * 29 + 700, 1440 * 29 + 1200):
        minutes[start : start + 90] += rng.poisson(1.5, size=90)
    config = SlidingConfig(detector=detector, cusum_threshold=10)  # type: ignore[arg-type]
    first, last = 1440 * 29 - 90, 1440 * 30 - 1
    replayed, final = run(SlidingDetector(never, config), minutes, at(first), at(last))
    assert sum(d.action == "open" for d in replayed) >= 2
    live: list[SlidingDecision] = []
    state, minute, pick = SlidingState(), first, random.Random(4)
    detector_live = SlidingDetector(never, config)  # a fresh process: nothing cached that the state lacks
    while minute <= last:
        upto = min(last, minute + pick.choice([0, 1, 2, 7, 59, 60, 61, 200]))
        found, state = run(detector_live, minutes, at(minute), at(upto), state)
        state = SlidingState.from_dict(json.loads(json.dumps(state.to_dict())))  # through surge_series' jsonb
        live.extend(found)
        minute = upto + 1
    assert live == replayed and state == final


def test_an_hourly_state_from_before_reads_as_checked_to_its_hours_end() -> None:
    old = {
        "alert_id": None,
        "opened_at": None,
        "window": None,
        "calm_checks": 0,
        "last_hour": "2026-12-07T09:00:00+08:00",
    }
    state = SlidingState.from_dict(old)
    assert state.last_minute == datetime(2026, 12, 7, 10, 0, tzinfo=CHINA) and state.cusum == 0.0


def test_inputs_are_checked() -> None:
    assert window_minutes("PT15M") == 15 and window_minutes("PT1H") == 60
    for bad in ("PT0M", "PT3H", "PT61M", "P1D", "15"):
        with pytest.raises(ValueError):
            window_minutes(bad)
    with pytest.raises(ValueError):
        SlidingConfig(windows=("PT60M", "PT1H"))
    with pytest.raises(ValueError):
        SlidingConfig(cusum_shift=1.0)
    with pytest.raises(ValueError):
        MinuteCounts(START + timedelta(seconds=5), [1])
    with pytest.raises(ValueError):
        MinuteCounts(START, [1, -1])


# --- the evaluation, small --------------------------------------------------------------------------------------


def test_a_small_evaluation_shows_the_sliding_test_earlier_than_the_hourly_one() -> None:
    from xinfang_stats import surge_eval

    def run_eval(name: str) -> surge_eval.Result:
        return surge_eval.evaluate(20250101, 3, name, 60, 40, SurgeConfig(), SlidingConfig())

    before, after = run_eval(surge_eval.DETECTORS[0]), run_eval("scaled PT15M+PT1H")
    delays = [[d for d in r.detected[3] if d is not None] for r in (before, after)]
    assert all(len(found) >= 10 for found in delays)
    assert np.median(delays[1]) < np.median(delays[0])
    assert after.false_alarms <= 1  # 60 calm days at 100 a day
