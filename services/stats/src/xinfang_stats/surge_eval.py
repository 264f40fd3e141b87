"""How well the surge detector (`xinfang_stats.surge`) works, on generated data with a seed.

    uv run --frozen python -m xinfang_stats.surge_eval [--seed 20250101] [--calm-days 1460] [--trials 300]

The data: hourly counts of one series from 2025-01-01 on, with China's real 2025-2026 calendar (the packaged
`xinfang_shared` holiday file): a day's expected count is the base rate times 1.0 on a working day (1.3 on the
first working day after a holiday), 0.45 on a rest day and 0.3 on a statutory holiday, times a day-level gamma
effect (coefficient of variation 0.25); it is spread over the hours by an office-hours profile on working days
(peaks 09:00-11:00 and 14:00-17:00) and a flatter, online-only profile on other days; each hour's count is
negative binomial around that (size 10), so counts are over-dispersed at both the day and the hour.

- Calm: `calm-days` series-days per base rate (series of a year each, after a 29-day warm-up), checked every
  hour from a closed state; every alert opened is a false alarm.
- Surges: `trials` per base rate and size: a calm series, a random day and start hour, a step of 4 to 8 hours
  during which the expected count is multiplied by 2 or 3 (the extra matters drawn like the others). The
  detector starts closed at the surge's first hour and is checked every hour until the surge ends and the
  longest window no longer holds any of it; the delay is from the surge's start to the end of the hour whose
  check opened the alert (1 h at best).

Each window is evaluated alone and all three together (one alert per series across them).
"""

from __future__ import annotations

import argparse
import math
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from xinfang_shared.workdays import CHINA, WorkingCalendar

from .surge import HourlyCounts, Series, SeriesState, SurgeConfig, SurgeDetector, window_hours

BASE_RATES = (1, 5, 20, 100)
MULTIPLIERS = (2, 3)
CONFIGS: dict[str, tuple[str, ...]] = {
    "PT1H": ("PT1H",),
    "PT3H": ("PT3H",),
    "PT24H": ("PT24H",),
    "PT1H+PT3H": ("PT1H", "PT3H"),
    "all three": ("PT1H", "PT3H", "PT24H"),
}
START = date(2025, 1, 1)
WARM_UP_DAYS = 57  # lookback_days + 1, so the 24-hour window has its full baseline on the first day checked
SERIES_DAYS = 365
SURGE_HOURS = (4, 8)
DAY_CV = 0.25
HOUR_SIZE = 10.0
REST_FACTOR, HOLIDAY_FACTOR, REBOUND_FACTOR = 0.45, 0.3, 1.3
_WORKING = np.array([3, 2, 1, 1, 1, 2, 4, 10, 40, 60, 60, 45, 20, 25, 50, 55, 50, 35, 15, 12, 12, 10, 8, 5], float)
_REST = np.array([6, 4, 3, 2, 2, 3, 5, 9, 14, 18, 19, 18, 16, 16, 17, 18, 17, 16, 16, 16, 15, 13, 10, 8], float)
WORKING_PROFILE, REST_PROFILE = _WORKING / _WORKING.sum(), _REST / _REST.sum()


@cache
def statutory_holidays() -> frozenset[date]:
    """The days off of every holiday period in the packaged calendar file."""
    text = resources.files("xinfang_shared").joinpath("data/holidays.toml").read_text(encoding="utf-8")
    years = tomllib.loads(text)["years"]
    return frozenset(day for table in years.values() for day in table["holidays"])


def is_holiday(day: date) -> bool:
    return day in statutory_holidays()


def day_factors(days: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Each day's volume factor from START on, and whether it is a working day."""
    calendar = WorkingCalendar.default()
    factors = np.empty(days)
    working = np.empty(days, dtype=bool)
    after_holiday = False
    for offset in range(days):
        day = START + timedelta(days=offset)
        working[offset] = calendar.is_working_day(day)
        if is_holiday(day):
            factors[offset], after_holiday = HOLIDAY_FACTOR, True
        elif working[offset]:
            factors[offset], after_holiday = (REBOUND_FACTOR if after_holiday else 1.0), False
        else:
            factors[offset] = REST_FACTOR
    return factors, working


@dataclass(frozen=True, slots=True)
class Simulated:
    counts: NDArray[np.int64]  # per hour from START
    means: NDArray[np.float64]  # the expected count of each hour (day effect included)


def simulate(rng: np.random.Generator, rate: float, days: int) -> Simulated:
    factors, working = day_factors(days)
    shape = 1.0 / DAY_CV**2
    day_means = rate * factors * rng.gamma(shape, 1.0 / shape, size=days)
    profiles = np.where(working[:, None], WORKING_PROFILE[None, :], REST_PROFILE[None, :])
    means = (day_means[:, None] * profiles).ravel()
    return Simulated(counts=_draw(rng, means), means=means)


def _draw(rng: np.random.Generator, means: NDArray[np.float64]) -> NDArray[np.int64]:
    """Negative binomial counts of size HOUR_SIZE around `means` (a gamma-Poisson mixture)."""
    return rng.poisson(rng.gamma(HOUR_SIZE, means / HOUR_SIZE)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Trial:
    series: int
    start: int  # hour index of the surge's first hour
    hours: int


@dataclass(frozen=True, slots=True)
class Result:
    rate: int
    config: str
    calm_days: int
    false_alarms: int
    detected: dict[int, list[int | None]]  # multiplier -> delay in hours per trial (None: missed)
    office: dict[int, list[bool]]  # multiplier -> whether each trial started in office hours on a working day


def _series(seed: int, rate_index: int, count: int) -> list[Simulated]:
    rng = np.random.default_rng([seed, rate_index])
    return [simulate(rng, BASE_RATES[rate_index], WARM_UP_DAYS + SERIES_DAYS) for _ in range(count)]


def _trials(seed: int, rate_index: int, multiplier: int, count: int, series: int) -> list[Trial]:
    rng = np.random.default_rng([seed, rate_index, multiplier, 1])
    last_day = WARM_UP_DAYS + SERIES_DAYS - 3  # room for the longest surge and window after it
    return [
        Trial(
            series=int(rng.integers(series)),
            start=24 * int(rng.integers(WARM_UP_DAYS, last_day)) + int(rng.integers(24)),
            hours=int(rng.integers(SURGE_HOURS[0], SURGE_HOURS[1] + 1)),
        )
        for _ in range(count)
    ]


def evaluate(
    seed: int, rate_index: int, config: str, calm_days: int, trials: int, settings: SurgeConfig, alike: bool
) -> Result:
    """False alarms on calm series and delays on surged ones, for one base rate and one window configuration."""
    count = math.ceil(calm_days / SERIES_DAYS)
    series = _series(seed, rate_index, count)
    working = WorkingCalendar.default().is_working_day if alike else None
    detector = SurgeDetector(is_holiday, replace(settings, windows=CONFIGS[config]), is_working_day=working)
    subject = Series.category("labor")
    start = datetime.combine(START, datetime.min.time(), tzinfo=CHINA)
    hour = timedelta(hours=1)
    false_alarms, days_left = 0, calm_days
    for simulated in series:
        days = min(days_left, SERIES_DAYS)
        days_left -= days
        counts = HourlyCounts(start, simulated.counts)
        state = SeriesState()
        for index in range(24 * WARM_UP_DAYS, 24 * (WARM_UP_DAYS + days)):
            decision = detector.observe(subject, start + index * hour, counts, state)
            state = decision.state
            false_alarms += decision.action == "open"
    longest = max(window_hours(window) for window in CONFIGS[config])
    detected: dict[int, list[int | None]] = {}
    office: dict[int, list[bool]] = {}
    working_days = day_factors(WARM_UP_DAYS + SERIES_DAYS)[1]
    for multiplier in MULTIPLIERS:
        rng = np.random.default_rng([seed, rate_index, multiplier, 2])
        delays: list[int | None] = []
        chosen = _trials(seed, rate_index, multiplier, trials, count)
        office[multiplier] = [bool(working_days[trial.start // 24]) and 8 <= trial.start % 24 < 18 for trial in chosen]
        for trial in chosen:
            simulated = series[trial.series]
            surged = simulated.counts.copy()
            span = slice(trial.start, trial.start + trial.hours)
            surged[span] += _draw(rng, (multiplier - 1) * simulated.means[span])
            counts = HourlyCounts(start, surged)
            state, delay = SeriesState(), None
            for index in range(trial.start, trial.start + trial.hours + longest - 1):
                decision = detector.observe(subject, start + index * hour, counts, state)
                state = decision.state
                if decision.action == "open":
                    delay = index - trial.start + 1
                    break
            delays.append(delay)
        detected[multiplier] = delays
    return Result(BASE_RATES[rate_index], config, calm_days, false_alarms, detected, office)


def _cells(delays: Sequence[int | None], office: Sequence[bool]) -> list[str]:
    found = [delay for delay in delays if delay is not None]
    daytime = [delay is not None for delay, inside in zip(delays, office, strict=True) if inside]
    rates = [f"{100 * len(found) / len(delays):.0f}%", f"{100 * sum(daytime) / max(1, len(daytime)):.0f}%"]
    if not found:
        return [*rates, "-", "-"]
    return [*rates, f"{np.median(found):g}", f"{np.percentile(found, 90):g}"]


def table(results: Sequence[Result]) -> str:
    head = ["windows", "matters/day", "false alarms /1000 calm days"]
    for multiplier in MULTIPLIERS:
        head += [f"×{multiplier} detected", "(office hours)", "median h", "p90 h"]
    rows = [head, ["---"] * len(head)]
    for result in results:
        row = [result.config, str(result.rate), f"{1000 * result.false_alarms / result.calm_days:.1f}"]
        for multiplier in MULTIPLIERS:
            row += _cells(result.detected[multiplier], result.office[multiplier])
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--calm-days", type=int, default=1095, help="calm series-days per base rate")
    parser.add_argument("--trials", type=int, default=200, help="surges per base rate and size")
    parser.add_argument("--workers", type=int, default=2)
    defaults = SurgeConfig()
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="false-alarm level of one check")
    parser.add_argument("--min-ratio", type=float, default=defaults.min_ratio, help="alarm needs this × baseline")
    parser.add_argument("--min-observed", type=int, default=defaults.min_observed, help="alarm needs this many")
    parser.add_argument(
        "--mixed-days", action="store_true", help="compare with all ordinary days, not the same kind (working/rest)"
    )
    args = parser.parse_args(argv)
    config = SurgeConfig(alpha=args.alpha, min_ratio=args.min_ratio, min_observed=args.min_observed)
    began = time.perf_counter()
    jobs = [
        (args.seed, rate, name, args.calm_days, args.trials, config, not args.mixed_days)
        for rate in range(len(BASE_RATES))
        for name in CONFIGS
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(evaluate, *zip(*jobs, strict=True)))
    results.sort(key=lambda result: (list(CONFIGS).index(result.config), result.rate))
    print(  # noqa: T201
        f"surge detector: alpha {config.alpha:g}, close at p>={config.close_alpha:g} for {config.close_after} checks, "
        f"baseline {config.min_days}-{config.max_days} days, alarm needs >= {config.min_observed} and "
        f">= {config.min_ratio:g}x the baseline; seed {args.seed}, {args.calm_days} calm series-days and "
        f"{args.trials} surges (4-8 h) per rate and size"
    )
    print(table(results))  # noqa: T201
    print(f"({time.perf_counter() - began:.0f} s)")  # noqa: T201


if __name__ == "__main__":
    main()
