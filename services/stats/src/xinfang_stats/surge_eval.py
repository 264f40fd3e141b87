"""How well the surge detectors (`xinfang_stats.surge`) work, on generated data with a seed.

    uv run --frozen python -m xinfang_stats.surge_eval [--seed 20250101] [--calm-days 1095] [--trials 200]

The data: hourly counts of one series from 2025-01-01 on, with China's real 2025-2026 calendar (the packaged
`xinfang_shared` holiday file): a day's expected count is the base rate times 1.0 on a working day (1.3 on the
first working day after a holiday), 0.45 on a rest day and 0.3 on a statutory holiday, times a day-level gamma
effect (coefficient of variation 0.25); it is spread over the hours by an office-hours profile on working days
(peaks 09:00-11:00 and 14:00-17:00) and a flatter, online-only profile on other days; each hour's count is
negative binomial around that (size 10), so counts are over-dispersed at both the day and the hour.

Each matter falls in a uniformly random minute of its hour.

- Calm: `calm-days` series-days per base rate (series of a year each, after a 57-day warm-up), checked from a
  closed state every hour (the hourly detector) or every minute (the sliding ones); every alert opened is a
  false alarm.
- Surges: `trials` per base rate and size: a calm series, a random day, hour and minute, a step of 4 to 8 hours
  during which the expected count is multiplied by 2 or 3 (the extra matters drawn like the others, each hour's
  share of them in that hour's surged minutes). The detector runs from 6 hours before (an alert still open at
  the start is dropped, the CUSUM kept), then until the surge ends and the longest window no longer holds any
  of it. The delay is from the surge's first minute to the check that opened the alert: the end of its hour
  for the hourly detector (as if checked the moment the hour ends), the window end for the sliding ones.

Detectors (`DETECTORS`): the hourly one before sliding windows (PT1H+PT3H, each complete hour), the sliding
scaled test (PT15M+PT1H every minute), the Poisson CUSUM, and both (one alert per series across them).
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
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from xinfang_shared.workdays import CHINA, WorkingCalendar

from .surge import (
    MINUTE,
    Detector,
    HourlyCounts,
    MinuteCounts,
    Series,
    SeriesState,
    SlidingConfig,
    SlidingDetector,
    SlidingState,
    SurgeConfig,
    SurgeDetector,
)

BASE_RATES = (1, 5, 20, 100)
MULTIPLIERS = (2, 3)
DETECTORS = ("hourly PT1H+PT3H (before)", "scaled PT15M+PT1H", "CUSUM", "both")
WARM_UP_HOURS = 6  # the sliding detectors run this long before a surge (the CUSUM's state)
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
    minutes: NDArray[np.int64]  # per minute from START (the hour's matters in random minutes of it)


def simulate(rng: np.random.Generator, rate: float, days: int) -> Simulated:
    factors, working = day_factors(days)
    shape = 1.0 / DAY_CV**2
    day_means = rate * factors * rng.gamma(shape, 1.0 / shape, size=days)
    profiles = np.where(working[:, None], WORKING_PROFILE[None, :], REST_PROFILE[None, :])
    means = (day_means[:, None] * profiles).ravel()
    counts = _draw(rng, means)
    return Simulated(counts=counts, means=means, minutes=spread(rng, counts, 60 * len(counts)))


def spread(rng: np.random.Generator, per_hour: NDArray[np.int64], size: int, first: int = 0) -> NDArray[np.int64]:
    """Per-minute counts (`size` minutes) of `per_hour[k]` matters in random minutes of hour `first + k`."""
    hours = np.repeat(np.arange(first, first + len(per_hour)), per_hour)
    return np.bincount(60 * hours + rng.integers(0, 60, size=len(hours)), minlength=size).astype(np.int64)


def _draw(rng: np.random.Generator, means: NDArray[np.float64]) -> NDArray[np.int64]:
    """Negative binomial counts of size HOUR_SIZE around `means` (a gamma-Poisson mixture)."""
    return rng.poisson(rng.gamma(HOUR_SIZE, means / HOUR_SIZE)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Trial:
    series: int
    start: int  # minute index of the surge's first minute
    minutes: int


@dataclass(frozen=True, slots=True)
class Result:
    rate: int
    detector: str
    calm_days: int
    false_alarms: int
    detected: dict[int, list[float | None]]  # multiplier -> delay in hours per trial (None: missed)
    office: dict[int, list[bool]]  # multiplier -> whether each trial started in office hours on a working day
    extra: dict[int, list[tuple[float, float]]]  # multiplier -> per trial: the span's calm mean, the surge's extra


def _series(seed: int, rate_index: int, count: int) -> list[Simulated]:
    rng = np.random.default_rng([seed, rate_index])
    return [simulate(rng, BASE_RATES[rate_index], WARM_UP_DAYS + SERIES_DAYS) for _ in range(count)]


def _trials(seed: int, rate_index: int, multiplier: int, count: int, series: int) -> list[Trial]:
    rng = np.random.default_rng([seed, rate_index, multiplier, 1])
    last_day = WARM_UP_DAYS + SERIES_DAYS - 3  # room for the longest surge and window after it
    return [
        Trial(
            series=int(rng.integers(series)),
            start=1440 * int(rng.integers(WARM_UP_DAYS, last_day)) + int(rng.integers(1440)),
            minutes=60 * int(rng.integers(SURGE_HOURS[0], SURGE_HOURS[1] + 1)),
        )
        for _ in range(count)
    ]


def surged(
    rng: np.random.Generator, simulated: Simulated, trial: Trial, multiplier: int
) -> tuple[Simulated, tuple[float, float]]:
    """The series with the surge added; the span's calm expected count, and the surge's expected extra."""
    first, stop = trial.start, trial.start + trial.minutes
    minutes, counts = simulated.minutes.copy(), simulated.counts.copy()
    expected = calm = 0.0
    for hour in range(first // 60, (stop - 1) // 60 + 1):
        low, high = max(first, 60 * hour), min(stop, 60 * hour + 60)
        mean = (multiplier - 1) * simulated.means[hour] * (high - low) / 60
        expected += mean
        calm += simulated.means[hour] * (high - low) / 60
        extra = int(_draw(rng, np.array([mean]))[0])
        minutes[low:high] += np.bincount(rng.integers(0, high - low, size=extra), minlength=high - low)
        counts[hour] += extra
    return Simulated(counts, simulated.means, minutes), (calm, expected)


def _sliding(name: str, settings: SlidingConfig) -> SlidingConfig:
    detector: Detector = "cusum" if name == "CUSUM" else "both" if name == "both" else "scaled"
    return replace(settings, detector=detector)


def evaluate(
    seed: int,
    rate_index: int,
    name: str,
    calm_days: int,
    trials: int,
    hourly: SurgeConfig,
    sliding: SlidingConfig,
) -> Result:
    """False alarms on calm series and delays on surged ones, for one base rate and one detector."""
    count = math.ceil(calm_days / SERIES_DAYS)
    series = _series(seed, rate_index, count)
    working = WorkingCalendar.default().is_working_day
    subject = Series.category("labor")
    start = datetime.combine(START, datetime.min.time(), tzinfo=CHINA)
    hour = timedelta(hours=1)
    is_hourly = name == DETECTORS[0]
    old = SurgeDetector(is_holiday, hourly, is_working_day=working)
    new = SlidingDetector(is_holiday, _sliding(name, sliding), is_working_day=working)

    def run(simulated: Simulated, first: int, last: int, state: SlidingState | SeriesState) -> tuple[int | None, Any]:
        """Check minutes (hours, for the hourly detector) `first` to `last`; the first opening's and the state."""
        counts = HourlyCounts(start, simulated.counts)
        if isinstance(state, SeriesState):
            opened = None
            for index in range(first, last + 1):
                decision = old.observe(subject, start + index * hour, counts, state)
                state = decision.state
                if decision.action == "open" and opened is None:
                    opened = index
            return opened, state
        minutes = MinuteCounts(start, simulated.minutes)
        found, state = new.observe(subject, counts, minutes, state, start + first * MINUTE, start + last * MINUTE)
        opens = [int((d.at - start) / MINUTE) for d in found if d.action == "open"]
        return (opens[0] if opens else None), state

    false_alarms, days_left = 0, calm_days
    for simulated in series:
        days = min(days_left, SERIES_DAYS)
        days_left -= days
        if is_hourly:
            found = 0
            counts = HourlyCounts(start, simulated.counts)
            state = SeriesState()
            for index in range(24 * WARM_UP_DAYS, 24 * (WARM_UP_DAYS + days)):
                decision = old.observe(subject, start + index * hour, counts, state)
                state = decision.state
                found += decision.action == "open"
            false_alarms += found
        else:
            minutes = MinuteCounts(start, simulated.minutes)
            first, last = start + 1440 * WARM_UP_DAYS * MINUTE, start + (1440 * (WARM_UP_DAYS + days) - 1) * MINUTE
            found_list, _ = new.observe(
                subject, HourlyCounts(start, simulated.counts), minutes, SlidingState(), first, last
            )
            false_alarms += sum(d.action == "open" for d in found_list)
    detected: dict[int, list[float | None]] = {}
    office: dict[int, list[bool]] = {}
    extras: dict[int, list[tuple[float, float]]] = {}
    working_days = day_factors(WARM_UP_DAYS + SERIES_DAYS)[1]
    for multiplier in MULTIPLIERS:
        rng = np.random.default_rng([seed, rate_index, multiplier, 2])
        delays: list[float | None] = []
        chosen = _trials(seed, rate_index, multiplier, trials, count)
        office[multiplier] = [
            bool(working_days[trial.start // 1440]) and 8 <= (trial.start % 1440) // 60 < 18 for trial in chosen
        ]
        extras[multiplier] = []
        for trial in chosen:
            data, expected = surged(rng, series[trial.series], trial, multiplier)
            extras[multiplier].append(expected)
            stop = trial.start + trial.minutes
            if is_hourly:  # checked at each hour's end, from the hour the surge starts in, until PT3H holds none
                opened, _ = run(data, trial.start // 60, (stop - 1) // 60 + 2, SeriesState())
                delays.append(None if opened is None else (60 * (opened + 1) - trial.start) / 60)
                continue
            _, before = run(data, trial.start - 60 * WARM_UP_HOURS, trial.start - 1, SlidingState())
            if before.is_open:  # a false alarm just before: the surge must raise its own
                before = replace(SlidingState(), last_minute=before.last_minute)
            opened, _ = run(data, trial.start, stop + 60, before)
            delays.append(None if opened is None else (opened - trial.start) / 60)
        detected[multiplier] = delays
    return Result(BASE_RATES[rate_index], name, calm_days, false_alarms, detected, office, extras)


def _cells(delays: Sequence[float | None], office: Sequence[bool]) -> list[str]:
    found = [delay for delay in delays if delay is not None]
    daytime = [delay is not None for delay, inside in zip(delays, office, strict=True) if inside]
    rates = [f"{100 * len(found) / len(delays):.0f}%", f"{100 * sum(daytime) / max(1, len(daytime)):.0f}%"]
    if not found:
        return [*rates, "-", "-"]
    return [*rates, f"{np.median(found):.1f}", f"{np.percentile(found, 90):.1f}"]


def table(results: Sequence[Result]) -> str:
    head = ["detector", "matters/day", "false alarms /1000 calm days"]
    for multiplier in MULTIPLIERS:
        head += [f"×{multiplier} detected", "(office hours)", "median h", "p90 h"]
    rows = [head, ["---"] * len(head)]
    for result in results:
        row = [result.detector, str(result.rate), f"{1000 * result.false_alarms / result.calm_days:.1f}"]
        for multiplier in MULTIPLIERS:
            row += _cells(result.detected[multiplier], result.office[multiplier])
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def oracle(calm: float, extra: float, level: float) -> float:
    """The power of the best test of one span at `level`, knowing its start, its length and its true calm mean
    (Poisson, no over-dispersion): no detector with fewer than `level` false alarms a day can catch the surge more
    often (a day's alarms include this span's). Randomised at the bound, so it is the exact Neyman-Pearson power."""
    bound = int(stats.poisson.isf(level, calm))  # P(X > bound) <= level
    over = stats.poisson.sf(bound, calm)
    at = stats.poisson.pmf(bound, calm)
    share = (level - over) / at if at > 0 else 0.0
    return float(stats.poisson.sf(bound, calm + extra) + share * stats.poisson.pmf(bound, calm + extra))


def sizes(results: Sequence[Result], level: float = 0.005) -> str:
    """How many extra matters the surges bring, per base rate, and the best any detector could do with them."""
    lines = []
    for result in results:
        if result.detector != DETECTORS[0]:
            continue
        for multiplier in MULTIPLIERS:
            spans = result.extra[multiplier]
            extra = np.array([e for _, e in spans])
            best = np.mean([oracle(c, e, level) for c, e in spans])
            lines.append(
                f"×{multiplier} over {result.rate}/day: extra matters (expected) median {np.median(extra):.1f},"
                f" < 10 in {100 * np.mean(extra < 10):.0f}% of surges; an oracle at {1000 * level:g} false alarms"
                f" per 1000 days catches at most {100 * best:.0f}%"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--calm-days", type=int, default=1095, help="calm series-days per base rate")
    parser.add_argument("--trials", type=int, default=200, help="surges per base rate and size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rates", type=int, nargs="+", default=list(BASE_RATES), choices=BASE_RATES)
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    defaults = SlidingConfig()
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="the sliding test's false-alarm level")
    parser.add_argument("--cusum-shift", type=float, default=defaults.cusum_shift, help="the CUSUM's rho")
    parser.add_argument("--cusum-threshold", type=float, default=defaults.cusum_threshold, help="the CUSUM's h")
    args = parser.parse_args(argv)
    hourly = SurgeConfig()
    sliding = replace(defaults, alpha=args.alpha, cusum_shift=args.cusum_shift, cusum_threshold=args.cusum_threshold)
    began = time.perf_counter()
    jobs = [
        (args.seed, BASE_RATES.index(rate), name, args.calm_days, args.trials, hourly, sliding)
        for name in args.detectors
        for rate in args.rates
    ]
    jobs.sort(key=lambda job: -BASE_RATES[job[1]])  # the longest first
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(evaluate, *zip(*jobs, strict=True)))
    results.sort(key=lambda result: (DETECTORS.index(result.detector), result.rate))
    print(  # noqa: T201
        f"hourly: alpha {hourly.alpha:g}, closing after {hourly.close_after} calm hours. Sliding: windows"
        f" {'+'.join(sliding.windows)} every minute, alpha {sliding.alpha:g}, alarm needs >= {sliding.min_observed}"
        f" and >= {sliding.min_ratio:g}x the baseline, closing after {sliding.close_after} calm minutes; CUSUM"
        f" rho {sliding.cusum_shift:g}, h {sliding.cusum_threshold:g}. Seed {args.seed}, {args.calm_days} calm"
        f" series-days and {args.trials} surges (4-8 h) per rate and size"
    )
    print(table(results))  # noqa: T201
    print(sizes(results))  # noqa: T201
    print(f"({time.perf_counter() - began:.0f} s)")  # noqa: T201


if __name__ == "__main__":
    main()
