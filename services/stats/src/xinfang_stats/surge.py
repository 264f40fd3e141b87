"""Surge early warning: is a region's or a category's trailing count far above its own baseline?

A pure module: no I/O, no clock, no randomness. Two detectors share the baseline and the test:
- `SlidingDetector` (below `MINUTE`), what the stats service runs (watch.py): every minute, the trailing 15 and
  60 minutes of each series (a city by its 4-digit region code prefix, or a category), the test scaled to the
  window; and the Poisson CUSUM it was compared with (surge_eval.py; README). Its state is a `SlidingState`.
- `SurgeDetector`, the hourly one it replaced (each complete hour, PT1H and PT3H): the test on counts described
  here, and the baseline days the sliding one uses; surge_eval keeps it as the "before".

The test (per window, e.g. PT1H, PT3H, PT24H: the `n` hours ending with the checked hour)
- Observed: the window's count. Baseline: the counts of the same span of hours on the `max_days` (28) most
  recent usable earlier days within `lookback_days` (56). A span touching a statutory holiday (`is_holiday`,
  by Beijing date) is not usable, nor is one that starts before the counts do (`HourlyCounts.start`: a fresh
  system has no history). Given `is_working_day`, only spans on the same kinds of day (working or rest day)
  are used, when there are `min_days` of them (rest days are a fraction of the volume of working days, so a
  mixed baseline hides weekend surges and inflates the variance on working days).
- With at least `min_days` (7) usable baseline days: method-of-moments fit of the baseline's mean `m` and
  sample variance `s²`; the predictive variance is `v = s²·(1 + 1/days)` (the new count varies around the true
  mean, and the mean is itself estimated). If `v > m`, a negative binomial with that mean and variance, else a
  Poisson with mean `m`. The upper tail `p = P(X >= observed)`; the window **alarms** when `p < alpha` (0.0001)
  and `observed >= min_observed` (5) and `observed >= min_ratio · m` (2×), so that tiny counts never alarm
  and a statistically clear but small relative rise on a large series does not either.
- With fewer usable days the window is in **cold start**: it alarms when the last hour alone has
  `cold_start_floor` (50) matters or more (DOMAIN.md); such a decision reports the window as PT1H.

The state machine (one open alert per series)
- Closed: the first check at which any configured window alarms opens an alert (the first alarming window in
  the configured order, shortest first, is the alert's window). Its `alert_id` is derived from the series and
  the hour it opened (uuid5), so replaying the same counts gives the same id.
- Open: further alarms open nothing. A check is *calm* when no window alarms and the alert's own window and
  the shorter ones are under their closing bound: `p >= close_alpha` (0.05: the rate is back within the
  baseline's ordinary range, not merely under the alarm bound; in cold start, the last hour under the floor).
  A longer window may still be raised by the surge just past (a PT1H alert need not wait a day for PT24H),
  but not alarming, so closing never makes way for an immediate new alert. After `close_after` (3)
  consecutive calm checks the alert closes; any other check resets the count.
- A check for an hour at or before the state's last checked hour changes nothing (action `none`, the state
  returned unchanged): repeated or late calls are harmless. Checks count, not hours: after a gap the next
  check tests its own windows, and counts as one check towards closing.

Defaults (`SurgeConfig`): windows PT1H and PT3H, alpha 1e-4, from the evaluation on generated data
(`python -m xinfang_stats.surge_eval`): with 24 checks a day, alpha 1e-3 gave 15-60 false alarms per 1,000
calm series-days at 20-100 matters a day; PT24H adds false alarms on small series and catches few surges of
a few hours. Limits: series of a few matters a day are undetectable at any sane false-alarm rate (alert on
cities and categories); an earlier surge stays in the baseline of later days (it widens the bound for up to
`max_days` days of the same kind).

State lives with the caller: `SeriesState` is a small frozen value (`to_dict`/`from_dict` give JSON-able
dicts, e.g. for a jsonb column); start a series with `SeriesState()`. Hours are Beijing hours (Asia/Shanghai,
no daylight saving): any aware datetime is converted and truncated to its Beijing hour.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

from xinfang_shared.workdays import CHINA

HOUR = timedelta(hours=1)
_DURATION = re.compile(r"PT([1-9][0-9]?)H")
_REGION = re.compile(r"[0-9]{4}")
_ALERT_NAMESPACE = uuid.UUID("5d2f3c1e-8a4b-4e1f-9c6d-2b7a0e9f4c31")

Action = Literal["open", "close", "none"]
Model = Literal["negative binomial", "Poisson", "cold-start floor"]
Status = Literal["alarm", "elevated", "calm"]


def beijing_hour(moment: datetime) -> datetime:
    """The start of the Beijing hour containing the aware datetime `moment`."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is naive; give an aware datetime")
    return moment.astimezone(CHINA).replace(minute=0, second=0, microsecond=0)


def window_hours(window: str) -> int:
    """The hours of an ISO 8601 window duration `PTnH`, 1 <= n <= 24 (e.g. PT1H, PT3H, PT24H)."""
    found = _DURATION.fullmatch(window)
    if found is None or int(found.group(1)) > 24:
        raise ValueError(f"window {window!r} is not an ISO 8601 duration PTnH with 1 <= n <= 24")
    return int(found.group(1))


@dataclass(frozen=True, slots=True)
class Series:
    """What is counted: a city (`region`, its 4-digit region code prefix) or a category."""

    kind: Literal["region", "category"]
    key: str

    def __post_init__(self) -> None:
        if self.kind == "region" and not _REGION.fullmatch(self.key):
            raise ValueError(f"a region series is a 4-digit region code prefix, not {self.key!r}")
        if self.kind == "category" and not self.key:
            raise ValueError("a category series needs the category")

    @classmethod
    def region(cls, code: str) -> Series:
        return cls("region", code)

    @classmethod
    def category(cls, name: str) -> Series:
        return cls("category", name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


def _binned(
    counts: Mapping[datetime, int],
    first: datetime,
    last: datetime,
    step: timedelta,
    truncate: Callable[[datetime], datetime],
) -> NDArray[np.int64]:
    """One count per `step` from `first` to `last` (exclusive): each key's count added to the step it falls in
    (`truncate`: its Beijing hour or minute); a key outside [first, last) is a `ValueError`."""
    size = max(0, int((last - first) / step))
    array = np.zeros(size, dtype=np.int64)
    for moment, count in counts.items():
        index = int((truncate(moment) - first) / step)
        if not 0 <= index < size:
            raise ValueError(f"{moment.isoformat()} is outside {first.isoformat()}..{last.isoformat()}")
        array[index] += count
    return array


class HourlyCounts:
    """Matters per Beijing hour of one series, for consecutive hours from `start` (inclusive) to `end` (exclusive).

    `start` is where counting began, or where the caller's query began (at least `max_days` + 1 days before the
    hour checked): hours before it are unknown, not zero, so baseline days before it are not usable.
    """

    __slots__ = ("_counts", "start")

    def __init__(self, start: datetime, counts: Sequence[int] | NDArray[np.integer[Any]]) -> None:
        hour = beijing_hour(start)
        if hour != start:
            raise ValueError(f"start {start.isoformat()} is not the start of an hour")
        array = np.array(counts, dtype=np.int64)
        if array.ndim != 1:
            raise ValueError("counts are one count per hour")
        if array.size and int(array.min()) < 0:
            raise ValueError("counts are never negative")
        array.setflags(write=False)
        self.start = hour
        self._counts = array

    @classmethod
    def from_mapping(cls, counts: Mapping[datetime, int], *, start: datetime, end: datetime) -> HourlyCounts:
        """Counts for the hours from `start` to `end` (exclusive), summed by the Beijing hour of each key.

        Keys may be in any time zone (e.g. UTC rows from PostgreSQL); hours without a key count zero; a key
        outside [start, end) is a `ValueError`.
        """
        first, last = beijing_hour(start), beijing_hour(end)
        if last != end.astimezone(CHINA):
            raise ValueError(f"end {end.isoformat()} is not the start of an hour")
        return cls(first, _binned(counts, first, last, HOUR, beijing_hour))

    @property
    def end(self) -> datetime:
        return self.start + len(self._counts) * HOUR

    @property
    def counts(self) -> NDArray[np.int64]:
        """The counts, one per hour from `start` (read-only)."""
        return self._counts

    def __len__(self) -> int:
        return len(self._counts)

    def index(self, hour: datetime) -> int:
        """The position of `hour`'s Beijing hour; `ValueError` if it is not covered."""
        index = int((beijing_hour(hour) - self.start) / HOUR)
        if not 0 <= index < len(self._counts):
            raise ValueError(f"{hour.isoformat()} is outside {self.start.isoformat()}..{self.end.isoformat()}")
        return index

    def __getitem__(self, hour: datetime) -> int:
        return int(self._counts[self.index(hour)])


@dataclass(frozen=True, slots=True)
class SurgeConfig:
    """The detector's settings (see the module docstring for what each does)."""

    windows: tuple[str, ...] = ("PT1H", "PT3H")
    alpha: float = 0.0001
    close_alpha: float = 0.05
    close_after: int = 3
    min_days: int = 7
    max_days: int = 28
    lookback_days: int = 56
    min_observed: int = 5
    min_ratio: float = 2.0
    cold_start_floor: int = 50

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("at least one window")
        hours = [window_hours(window) for window in self.windows]
        if len(set(hours)) != len(hours):
            raise ValueError(f"windows {self.windows} repeat a duration")
        # shortest first: the order in which an alarm picks the alert's window
        object.__setattr__(self, "windows", tuple(w for _, w in sorted(zip(hours, self.windows, strict=True))))
        if not 0 < self.alpha < self.close_alpha < 1:
            raise ValueError("need 0 < alpha < close_alpha < 1")
        if self.close_after < 1:
            raise ValueError("close_after is at least 1")
        if not 2 <= self.min_days <= self.max_days <= self.lookback_days:
            raise ValueError("need 2 <= min_days <= max_days <= lookback_days")
        if self.min_observed < 1 or self.min_ratio < 1 or self.cold_start_floor < 1:
            raise ValueError("min_observed, min_ratio and cold_start_floor are at least 1")


@dataclass(frozen=True, slots=True)
class SeriesState:
    """One series' alert state, kept by the caller between checks. `SeriesState()` is a fresh, closed series."""

    alert_id: uuid.UUID | None = None
    opened_at: datetime | None = None
    window: str | None = None
    calm_checks: int = 0
    last_hour: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.alert_id is not None

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "alert_id": None if self.alert_id is None else str(self.alert_id),
            "opened_at": None if self.opened_at is None else self.opened_at.isoformat(),
            "window": self.window,
            "calm_checks": self.calm_checks,
            "last_hour": None if self.last_hour is None else self.last_hour.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeriesState:
        def moment(value: Any) -> datetime | None:
            return None if value is None else beijing_hour(datetime.fromisoformat(value))

        alert = data.get("alert_id")
        return cls(
            alert_id=None if alert is None else uuid.UUID(alert),
            opened_at=moment(data.get("opened_at")),
            window=data.get("window"),
            calm_checks=int(data.get("calm_checks", 0)),
            last_hour=moment(data.get("last_hour")),
        )


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One window's test at one hour."""

    window: str
    observed: int
    mean: float  # the baseline mean: the window's expected count
    variance: float  # the predictive variance (0.0 in cold start without two baseline days)
    days: int  # usable baseline days
    model: Model
    p_value: float | None  # P(X >= observed) under the model; None in cold start
    status: Status
    method: str

    def upper_bound(self, alpha: float) -> int | None:
        """The smallest count `b` with P(X > b) <= alpha under the model (alarm needs observed > b)."""
        if self.p_value is None:
            return None
        low, high = 0, max(1, math.ceil(self.mean + math.sqrt(self.variance / alpha))) + 1  # Cantelli
        while low < high:
            middle = (low + high) // 2
            if _tail(middle + 1, self.mean, self.variance, self.model) <= alpha:
                high = middle
            else:
                low = middle + 1
        return low


@dataclass(frozen=True, slots=True)
class Decision:
    """What one check decided, and the state to keep for the next.

    `window`, `observed`, `baseline` (the window's expected count), `method`, `p_value` describe the alert's
    window: on `open` the window that alarmed (PT1H for the cold-start floor), on `close` and on `none` while
    open the window it opened on, on `none` while closed the shortest window. `bound` (the alarm bound:
    alarms need observed > bound) is filled on `open` and `close` only, and not in cold start. `alert_id` is
    the open alert's, also on its `close`. `at` is when the window ended (the end of `hour`). For the
    `stats.alerts` event: state `open`/`closed`, `region_code` or `category` from `series`, and these fields.
    """

    action: Action
    series: Series
    hour: datetime
    window: str
    observed: int
    baseline: float
    method: str
    p_value: float | None
    bound: int | None
    alert_id: uuid.UUID | None
    state: SeriesState
    checks: tuple[WindowCheck, ...] = field(default=())

    @property
    def at(self) -> datetime:
        return self.hour + HOUR


def _tail(observed: int, mean: float, variance: float, model: Model) -> float:
    """P(X >= observed) for a Poisson (mean) or negative binomial (mean, variance > mean) count X."""
    if observed <= 0:
        return 1.0
    if model == "Poisson":
        return 0.0 if mean <= 0 else float(special.gammainc(observed, mean))
    size, success = mean * mean / (variance - mean), mean / variance
    return float(special.betainc(observed, size, 1.0 - success))


class SurgeDetector:
    """Checks series against their own baselines; holds only its settings (state is the caller's).

    `is_holiday(day)`: whether a Beijing date is a statutory holiday (left out of every baseline).
    `is_working_day(day)`, optional: when given, a window is compared with earlier spans on the same kinds of
    day (working or rest day, for the window's first and last date), if there are `min_days` of them, else with
    all ordinary days. Both are taken to be fixed for each date (their answers are cached).
    """

    def __init__(
        self,
        is_holiday: Callable[[date], bool],
        config: SurgeConfig | None = None,
        *,
        is_working_day: Callable[[date], bool] | None = None,
    ) -> None:
        self.config = config or SurgeConfig()
        self._is_holiday = is_holiday
        self._is_working_day = is_working_day
        self._first = 0  # date ordinal of the first day in the table below
        self._holidays: NDArray[np.bool_] = np.zeros(0, dtype=bool)  # per day from self._first
        self._working: NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._back = 24 * np.arange(1, self.config.lookback_days + 1, dtype=np.int64)

    def _days(self, first: int, last: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Whether each day from ordinal `first` to `last` (inclusive) is a holiday, and a working day."""
        size = len(self._holidays)
        if first < self._first or last >= self._first + size:
            low = min(first, self._first) if size else first
            high = max(last, self._first + size - 1) if size else last
            days = [date.fromordinal(ordinal) for ordinal in range(low, high + 1)]
            self._holidays = np.array([bool(self._is_holiday(day)) for day in days], dtype=bool)
            working = self._is_working_day
            self._working = np.array([True if working is None else bool(working(day)) for day in days], dtype=bool)
            self._first = low
        return (
            self._holidays[first - self._first : last - self._first + 1],
            self._working[first - self._first : last - self._first + 1],
        )

    def observe(self, series: Series, hour: datetime, counts: HourlyCounts, state: SeriesState) -> Decision:
        """Check `series` at the Beijing hour containing `hour` (the last hour of every window; complete).

        `counts` must cover that hour and, for a full baseline, the `lookback_days` (56) days and the longest
        window before it (57 days of hourly counts do); `state` is what the previous decision returned
        (`SeriesState()` the first time). The decision's `state` replaces it.
        """
        checked = beijing_hour(hour)
        index = counts.index(checked)
        windows = list(self.config.windows)
        if state.window is not None and state.window not in windows:
            windows.append(state.window)  # an alert opened under another configuration closes by its own window
        checks = self._checks(counts, index, windows)
        own = next((check for check in checks if check.window == state.window), checks[0])
        if state.last_hour is not None and checked <= state.last_hour:
            return self._decide("none", series, checked, own, state, checks)
        if not state.is_open:
            alarm = next((check for check in checks if check.status == "alarm"), None)
            if alarm is None:
                return self._decide("none", series, checked, own, replace(state, last_hour=checked), checks)
            if alarm.model == "cold-start floor":
                alarm = replace(alarm, window="PT1H")  # the floor is a count of one hour
            opened = SeriesState(
                alert_id=uuid.uuid5(_ALERT_NAMESPACE, f"{series}|{checked.isoformat()}"),
                opened_at=checked,
                window=alarm.window,
                last_hour=checked,
            )
            return self._decide("open", series, checked, alarm, opened, checks)
        own_hours = window_hours(own.window)
        calm = all(
            check.status != "alarm" and (check.status == "calm" or window_hours(check.window) > own_hours)
            for check in checks
        )
        streak = state.calm_checks + 1 if calm else 0
        if streak >= self.config.close_after:
            closed = SeriesState(last_hour=checked)
            return self._decide("close", series, checked, own, closed, checks, state.alert_id)
        kept = replace(state, calm_checks=streak, last_hour=checked)
        return self._decide("none", series, checked, own, kept, checks)

    def check(self, counts: HourlyCounts, hour: datetime, window: str) -> WindowCheck:
        """Test one window ending with the Beijing hour containing `hour` (see the module docstring)."""
        return self._checks(counts, counts.index(hour), [window])[0]

    def _checks(self, counts: HourlyCounts, index: int, windows: Sequence[str]) -> tuple[WindowCheck, ...]:
        config = self.config
        spans = [window_hours(window) for window in windows]
        offset = max(0, index + 1 - (24 * config.lookback_days + max(spans)))
        local = counts.counts[offset : index + 1]
        cumulative = np.zeros(len(local) + 1, dtype=np.int64)
        np.cumsum(local, out=cumulative[1:])
        hour0 = counts.start.hour + offset  # local[0]'s hours after the midnight of the counts' first day
        day0, ordinal = hour0 // 24, counts.start.toordinal()
        holidays, working = self._days(ordinal + day0, ordinal + (hour0 + len(local) - 1) // 24)
        end = len(local) - 1  # the checked hour
        last_hour = int(local[end])
        checks = []
        for window, span in zip(windows, spans, strict=True):
            observed = int(cumulative[end + 1] - cumulative[max(0, end + 1 - span)])
            lasts = end - self._back[: max(0, min(config.lookback_days, (end + 1 - span) // 24))]
            firsts = lasts - (span - 1)
            first_days, last_days = (hour0 + firsts) // 24 - day0, (hour0 + lasts) // 24 - day0
            usable = ~(holidays[first_days] | holidays[last_days])
            kind = ""
            if self._is_working_day is not None:
                now_first, now_last = (hour0 + max(0, end + 1 - span)) // 24 - day0, (hour0 + end) // 24 - day0
                alike = usable & (working[first_days] == working[now_first]) & (working[last_days] == working[now_last])
                if np.count_nonzero(alike) >= config.min_days:
                    usable = alike
                    kind = "working-day " if working[now_last] else "rest-day "
            chosen = np.flatnonzero(usable)[: config.max_days]  # the most recent first
            baseline: list[int] = (cumulative[lasts[chosen] + 1] - cumulative[firsts[chosen]]).tolist()
            checks.append(self._test(window, observed, last_hour, baseline, kind))
        return tuple(checks)

    def _test(self, window: str, observed: int, last_hour: int, baseline: list[int], kind: str) -> WindowCheck:
        config = self.config
        days_used = len(baseline)
        mean = sum(baseline) / days_used if baseline else 0.0
        if days_used < config.min_days:
            variance = sum((x - mean) ** 2 for x in baseline) / (days_used - 1) if days_used > 1 else 0.0
            floor = config.cold_start_floor
            return WindowCheck(
                window=window,
                observed=last_hour,
                mean=mean,
                variance=variance,
                days=days_used,
                model="cold-start floor",
                p_value=None,
                status="alarm" if last_hour >= floor else "calm",
                method=f"cold-start floor {floor}/h ({days_used} baseline days, {config.min_days} needed)",
            )
        sample = sum((x - mean) ** 2 for x in baseline) / (days_used - 1)
        variance = sample * (1.0 + 1.0 / days_used)
        model: Model = "negative binomial" if variance > mean else "Poisson"
        if model == "Poisson":
            variance = mean
        p_value = _tail(observed, mean, variance, model)
        if p_value < config.alpha and observed >= config.min_observed and observed >= config.min_ratio * mean:
            status: Status = "alarm"
        elif p_value < config.close_alpha:
            status = "elevated"
        else:
            status = "calm"
        return WindowCheck(
            window=window,
            observed=observed,
            mean=mean,
            variance=variance,
            days=days_used,
            model=model,
            p_value=p_value,
            status=status,
            method=f"{model}, {days_used} {kind}baseline days, p<{config.alpha:g}",
        )

    def _decide(
        self,
        action: Action,
        series: Series,
        hour: datetime,
        main: WindowCheck,
        state: SeriesState,
        checks: tuple[WindowCheck, ...],
        alert_id: uuid.UUID | None = None,
    ) -> Decision:
        return Decision(
            action=action,
            series=series,
            hour=hour,
            window=main.window,
            observed=main.observed,
            baseline=main.mean,
            method=main.method,
            p_value=main.p_value,
            bound=main.upper_bound(self.config.alpha) if action != "none" else None,
            alert_id=alert_id or state.alert_id,
            state=state,
            checks=checks,
        )


def observe_all(
    detector: SurgeDetector,
    series: Series,
    counts: HourlyCounts,
    state: SeriesState,
    hours: Iterable[datetime],
) -> tuple[list[Decision], SeriesState]:
    """Check `series` at each of `hours` in turn, threading the state; the open and close decisions and the state."""
    events: list[Decision] = []
    for hour in hours:
        decision = detector.observe(series, hour, counts, state)
        state = decision.state
        if decision.action != "none":
            events.append(decision)
    return events, state


# --- Sliding windows, checked every minute -------------------------------------------------------------------------
#
# The hourly detector above judges an hour once it is complete, so a burst is seen an hour or more after it
# began. The sliding detector below checks, at every minute boundary T (event time), the trailing windows
# [T - w, T) of `SlidingConfig.windows` (PT15M and PT1H) against the same baseline: the hourly counts of the two
# hours the window can touch (the hour T falls in and the one before), on the same usable days as above, each
# day's count scaled to the window by the share of each hour it covers (a = the share of the earlier hour, b of
# the later). A matter is as likely in any minute of its hour, so the window's count on a baseline day is the
# hours' counts thinned: its mean is a·m1 + b·m2 and its predictive variance that of the scaled day counts
# (s²·(1 + 1/days)) plus the thinning, a(1-a)·m1 + b(1-b)·m2. Then the same negative binomial (or Poisson)
# tail, the same alpha, min_observed and min_ratio. In cold start (fewer than min_days usable days) the floor
# counts the trailing 60 minutes: the 50th matter within an hour raises the alert at the next minute boundary.
#
# Beside it, a Poisson CUSUM per series (`detector="cusum"` or `"both"`): each minute
# S = max(0, S + x·ln(rho) - (rho - 1)·mu), x the minute's matters and mu its baseline mean (the same scaling,
# a one-minute window); it alarms when S >= h. It is the sequential test that minimises the delay to detect a
# step from mu to rho·mu for a given false-alarm rate, and it accumulates evidence across windows. It is held at
# zero while an alert is open. Which one the service runs, and why, is in the README (surge_eval's table).
#
# One alert per series: opened at the first minute anything alarms (its id from the series and the minute),
# closed after `close_after` consecutive calm minutes (no alarm, and the alert's window and the shorter ones at
# p >= close_alpha; a CUSUM alert is judged on every window). A minute at or before the last checked changes
# nothing, and the state carries everything the next minute needs (CUSUM included), so checking minute by minute
# in many rounds gives exactly what one catch-up over the same counts gives: a replay equals live.

MINUTE = timedelta(minutes=1)
_MINUTES = re.compile(r"PT(?:([1-9][0-9]?)H)?(?:([1-9][0-9]?)M)?")
Detector = Literal["scaled", "cusum", "both"]


def beijing_minute(moment: datetime) -> datetime:
    """The start of the minute containing the aware datetime `moment`, in Beijing time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is naive; give an aware datetime")
    return moment.astimezone(CHINA).replace(second=0, microsecond=0)


def window_minutes(window: str) -> int:
    """The minutes of a sliding window `PTnM` or `PTnH`, 1 to 60 minutes (e.g. PT15M, PT1H)."""
    found = _MINUTES.fullmatch(window)
    if found is None or not any(found.groups()):
        raise ValueError(f"window {window!r} is not an ISO 8601 duration PTnH or PTnM")
    minutes = 60 * int(found.group(1) or 0) + int(found.group(2) or 0)
    if not 1 <= minutes <= 60:
        raise ValueError(f"a sliding window is 1 to 60 minutes, not {window!r}")
    return minutes


class MinuteCounts:
    """Matters per minute of one series, for consecutive minutes from `start` (inclusive)."""

    __slots__ = ("_cumulative", "start")

    def __init__(self, start: datetime, counts: Sequence[int] | NDArray[np.integer[Any]]) -> None:
        if beijing_minute(start) != start:
            raise ValueError(f"start {start.isoformat()} is not the start of a minute")
        array = np.asarray(counts, dtype=np.int64)
        if array.ndim != 1 or (array.size and int(array.min()) < 0):
            raise ValueError("counts are one non-negative count per minute")
        self.start = beijing_minute(start)
        self._cumulative = np.zeros(array.size + 1, dtype=np.int64)
        np.cumsum(array, out=self._cumulative[1:])

    @classmethod
    def from_mapping(cls, counts: Mapping[datetime, int], *, start: datetime, end: datetime) -> MinuteCounts:
        """Counts for the minutes from `start` to `end` (exclusive), summed by the minute of each key (any time
        zone); minutes without a key count zero; a key outside [start, end) is a `ValueError`."""
        first, last = beijing_minute(start), beijing_minute(end)
        return cls(first, _binned(counts, first, last, MINUTE, beijing_minute))

    @property
    def end(self) -> datetime:
        return self.start + (len(self._cumulative) - 1) * MINUTE

    def sums(self, first_end: datetime, ends: int, minutes: int) -> NDArray[np.int64]:
        """The counts of the windows [T - minutes, T) for the `ends` window ends T from `first_end`, a minute
        apart; minutes before `start` count zero (they are before counting began), after `end` an error."""
        offset = int((beijing_minute(first_end) - self.start) / MINUTE)
        if offset + ends - 1 > len(self._cumulative) - 1:
            raise ValueError(f"windows up to {(first_end + (ends - 1) * MINUTE).isoformat()} pass {self.end}")
        stops = np.arange(offset, offset + ends)
        starts = np.clip(stops - minutes, 0, None)
        stops = np.clip(stops, 0, None)
        return self._cumulative[stops] - self._cumulative[starts]


@dataclass(frozen=True, slots=True)
class SlidingConfig:
    """The sliding detector's settings (see the comment above `MINUTE`). `close_after` counts minutes."""

    windows: tuple[str, ...] = ("PT15M", "PT1H")
    detector: Detector = "scaled"
    # 60 checks an hour, not one: the largest alpha at which the false alarms at 100 matters a day stay at their
    # floor in surge_eval (5.5 per 1,000 calm days; 6.4 at 1e-5, still 5.5 at 5e-6)
    alpha: float = 0.000007
    close_alpha: float = 0.05
    close_after: int = 60
    min_days: int = 7
    max_days: int = 28
    lookback_days: int = 56
    min_observed: int = 5
    min_ratio: float = 2.0
    cold_start_floor: int = 50
    cusum_shift: float = 3.0  # rho: the step the CUSUM is tuned to, as a multiple of the baseline
    cusum_threshold: float = 28.0  # h: about 5 false alarms per 1,000 days at 100 matters a day (surge_eval)

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("at least one window")
        minutes = [window_minutes(window) for window in self.windows]
        if len(set(minutes)) != len(minutes):
            raise ValueError(f"windows {self.windows} repeat a duration")
        object.__setattr__(self, "windows", tuple(w for _, w in sorted(zip(minutes, self.windows, strict=True))))
        if self.detector not in ("scaled", "cusum", "both"):
            raise ValueError(f"detector {self.detector!r} is not scaled, cusum or both")
        if not 0 < self.alpha < self.close_alpha < 1:
            raise ValueError("need 0 < alpha < close_alpha < 1")
        if self.close_after < 1:
            raise ValueError("close_after is at least 1")
        if not 2 <= self.min_days <= self.max_days <= self.lookback_days:
            raise ValueError("need 2 <= min_days <= max_days <= lookback_days")
        if self.min_observed < 1 or self.min_ratio < 1 or self.cold_start_floor < 1:
            raise ValueError("min_observed, min_ratio and cold_start_floor are at least 1")
        if self.cusum_shift <= 1 or self.cusum_threshold <= 0:
            raise ValueError("cusum_shift is above 1 and cusum_threshold above 0")

    @property
    def longest(self) -> str:
        return self.windows[-1]


@dataclass(frozen=True, slots=True)
class SlidingState:
    """One series' state between minutes: its open alert, its calm minutes, the CUSUM, the last minute checked
    (a window end). `SlidingState()` is a fresh, closed series."""

    alert_id: uuid.UUID | None = None
    opened_at: datetime | None = None
    window: str | None = None  # the window the alert is judged on for closing
    calm_checks: int = 0
    last_minute: datetime | None = None
    cusum: float = 0.0
    cusum_since: datetime | None = None  # the window end at which S last left zero
    cusum_observed: int = 0  # matters since then
    cusum_expected: float = 0.0  # their baseline

    @property
    def is_open(self) -> bool:
        return self.alert_id is not None

    def to_dict(self) -> dict[str, str | int | float | None]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "alert_id": None if self.alert_id is None else str(self.alert_id),
            "opened_at": moment(self.opened_at),
            "window": self.window,
            "calm_checks": self.calm_checks,
            "last_minute": moment(self.last_minute),
            "cusum": self.cusum,
            "cusum_since": moment(self.cusum_since),
            "cusum_observed": self.cusum_observed,
            "cusum_expected": self.cusum_expected,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlidingState:
        """Also reads an hourly `SeriesState`'s dict (before sliding windows): its last hour checked is the
        window that ended at that hour's end."""

        def moment(value: Any) -> datetime | None:
            return None if value is None else beijing_minute(datetime.fromisoformat(value))

        alert = data.get("alert_id")
        last = moment(data.get("last_minute"))
        if last is None and data.get("last_hour") is not None:
            last = beijing_hour(datetime.fromisoformat(data["last_hour"])) + HOUR
        return cls(
            alert_id=None if alert is None else uuid.UUID(alert),
            opened_at=moment(data.get("opened_at")),
            window=data.get("window"),  # one the configuration lacks (e.g. PT3H) closes on the longest
            calm_checks=int(data.get("calm_checks", 0)),
            last_minute=last,
            cusum=float(data.get("cusum", 0.0)),
            cusum_since=moment(data.get("cusum_since")),
            cusum_observed=int(data.get("cusum_observed", 0)),
            cusum_expected=float(data.get("cusum_expected", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class SlidingDecision:
    """An alert opened or closed at window end `at`: `window`, `observed`, `baseline` (its expected count),
    `method` describe the window the alert is about (the one that alarmed on open, the alert's own on close;
    for a CUSUM alert the trailing longest window, the method telling the CUSUM's own run)."""

    action: Literal["open", "close"]
    series: Series
    at: datetime
    window: str
    observed: int
    baseline: float
    method: str
    p_value: float | None
    alert_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class HourChecks:
    """The tests of every window ending in one Beijing hour (index m: the window ending at `hour` + m minutes),
    and the CUSUM's inputs; `minute_mean` is None in cold start."""

    hour: datetime
    days: int
    kind: str
    observed: dict[str, NDArray[np.int64]]
    mean: dict[str, NDArray[np.float64]]
    p_value: dict[str, NDArray[np.float64]]
    status: dict[str, list[Status]]
    model: dict[str, list[Model]]
    minute: NDArray[np.int64]  # matters in the minute before each window end
    minute_mean: NDArray[np.float64] | None

    @property
    def cold(self) -> bool:
        return self.minute_mean is None


def _tails(observed: NDArray[np.int64], mean: NDArray[np.float64], variance: NDArray[np.float64]) -> NDArray[Any]:
    """P(X >= observed), element-wise, for a negative binomial (variance > mean) or else Poisson count X."""
    p = np.ones(observed.shape, dtype=np.float64)
    positive = observed > 0
    binomial = positive & (variance > mean) & (mean > 0)
    poisson = positive & ~binomial
    p[poisson & (mean <= 0)] = 0.0
    some = poisson & (mean > 0)
    p[some] = special.gammainc(observed[some], mean[some])
    if binomial.any():
        m, v = mean[binomial], variance[binomial]
        p[binomial] = special.betainc(observed[binomial], m * m / (v - m), 1.0 - m / v)
    return p


class SlidingDetector:
    """Checks series every minute against their own hourly baselines; holds only its settings and a calendar
    (state is the caller's). `is_holiday` and `is_working_day` as for `SurgeDetector`."""

    def __init__(
        self,
        is_holiday: Callable[[date], bool],
        config: SlidingConfig | None = None,
        *,
        is_working_day: Callable[[date], bool] | None = None,
    ) -> None:
        self.config = config or SlidingConfig()
        c = self.config
        self._calendar = SurgeDetector(
            is_holiday,
            SurgeConfig(min_days=c.min_days, max_days=c.max_days, lookback_days=c.lookback_days),
            is_working_day=is_working_day,
        )
        self._has_working = is_working_day is not None
        self._minutes = {window: window_minutes(window) for window in c.windows}
        steps = np.arange(60)
        self._shares = {  # per window: the share of the earlier and of the later hour, per window end
            w: (np.clip(n - steps, 0, None) / 60.0, np.minimum(n, steps) / 60.0)
            for w, n in [*self._minutes.items(), ("PT1M", 1)]
        }

    def _baseline(self, counts: HourlyCounts, hour: datetime) -> tuple[NDArray[np.float64], str]:
        """The usable baseline days' counts of the hour before `hour` and of `hour` (a days × 2 array, the most
        recent day first), and which kind of day they are ('' when mixed)."""
        config, calendar = self.config, self._calendar
        index = counts.index(hour)
        offset = max(0, index + 1 - (24 * config.lookback_days + 2))
        local = counts.counts[offset : index + 1]
        hour0 = counts.start.hour + offset
        day0, ordinal = hour0 // 24, counts.start.toordinal()
        holidays, working = calendar._days(ordinal + day0, ordinal + (hour0 + len(local) - 1) // 24)
        end = len(local) - 1
        lasts = end - calendar._back[: max(0, min(config.lookback_days, (end - 1) // 24))]
        firsts = lasts - 1
        first_days, last_days = (hour0 + firsts) // 24 - day0, (hour0 + lasts) // 24 - day0
        usable = ~(holidays[first_days] | holidays[last_days])
        kind = ""
        if self._has_working:
            now_first, now_last = (hour0 + max(0, end - 1)) // 24 - day0, (hour0 + end) // 24 - day0
            alike = usable & (working[first_days] == working[now_first]) & (working[last_days] == working[now_last])
            if np.count_nonzero(alike) >= config.min_days:
                usable = alike
                kind = "working-day " if working[now_last] else "rest-day "
        chosen = np.flatnonzero(usable)[: config.max_days]
        table = np.stack([local[firsts[chosen]], local[lasts[chosen]]], axis=1).astype(np.float64)
        return table, kind

    def hour_checks(self, counts: HourlyCounts, minutes: MinuteCounts, hour: datetime) -> HourChecks:
        """The tests of the 60 window ends in the Beijing hour containing `hour` (all 60, whichever are checked:
        the numbers of a minute never depend on which others are computed with it). `counts` covers the hour and
        its baseline; `minutes` the hour and the longest window before it."""
        config = self.config
        start = beijing_hour(hour)
        table, kind = self._baseline(counts, start)
        days = len(table)
        trailing = minutes.sums(start, 60, 60)
        observed = {w: minutes.sums(start, 60, n) for w, n in self._minutes.items()}
        minute = minutes.sums(start, 60, 1)
        if days < config.min_days:
            status: list[Status] = ["alarm" if x >= config.cold_start_floor else "calm" for x in trailing.tolist()]
            zeros = np.zeros(60)
            return HourChecks(
                hour=start,
                days=days,
                kind=kind,
                observed={w: trailing for w in config.windows},
                mean={w: zeros for w in config.windows},
                p_value={w: np.full(60, np.nan) for w in config.windows},
                status={w: status for w in config.windows},
                model={w: ["cold-start floor"] * 60 for w in config.windows},
                minute=minute,
                minute_mean=None,
            )
        hour_means = table.mean(axis=0)
        means, p_values, statuses, models = {}, {}, {}, {}
        for window in [*config.windows, "PT1M"]:
            a, b = self._shares[window]
            scaled = table[:, :1] * a[None, :] + table[:, 1:] * b[None, :]  # days × 60
            mean = scaled.mean(axis=0)
            if window == "PT1M":
                minute_mean = mean
                continue
            variance = scaled.var(axis=0, ddof=1) * (1.0 + 1.0 / days)
            variance += a * (1 - a) * hour_means[0] + b * (1 - b) * hour_means[1]
            binomial = variance > mean
            p = _tails(observed[window], mean, np.where(binomial, variance, mean))
            alarm = (p < config.alpha) & (observed[window] >= config.min_observed)
            alarm &= observed[window] >= config.min_ratio * mean
            means[window], p_values[window] = mean, p
            statuses[window] = np.where(alarm, "alarm", np.where(p < config.close_alpha, "elevated", "calm")).tolist()
            models[window] = np.where(binomial, "negative binomial", "Poisson").tolist()
        return HourChecks(start, days, kind, observed, means, p_values, statuses, models, minute, minute_mean)

    def _method(self, checks: HourChecks, window: str, m: int) -> str:
        if checks.cold:
            return (
                f"cold-start floor {self.config.cold_start_floor} in 60 min"
                f" ({checks.days} baseline days, {self.config.min_days} needed)"
            )
        return (
            f"{checks.model[window][m]}, {checks.days} {checks.kind}baseline days scaled to {window},"
            f" p<{self.config.alpha:g}"
        )

    def observe(
        self,
        series: Series,
        counts: HourlyCounts,
        minutes: MinuteCounts,
        state: SlidingState,
        first: datetime,
        last: datetime,
    ) -> tuple[list[SlidingDecision], SlidingState]:
        """Check `series` at every window end from `first` to `last` (minute boundaries, inclusive) after the
        state's last; returns the alerts opened and closed, and the state to keep."""
        first, last = beijing_minute(first), beijing_minute(last)
        if state.last_minute is not None:
            first = max(first, state.last_minute + MINUTE)
        decisions: list[SlidingDecision] = []
        at = first
        while at <= last:
            hour = beijing_hour(at)
            checks = self.hour_checks(counts, minutes, hour)
            stop = min(last, hour + 59 * MINUTE)
            steps = int((at - hour) / MINUTE), int((stop - hour) / MINUTE)
            for m in range(steps[0], steps[1] + 1):
                state = self._step(series, checks, m, state, decisions)
            at = stop + MINUTE
        return decisions, state

    def _step(
        self, series: Series, checks: HourChecks, m: int, state: SlidingState, out: list[SlidingDecision]
    ) -> SlidingState:
        """One window end: the state machine (see the comment above `MINUTE`)."""
        config = self.config
        at = checks.hour + m * MINUTE
        scaled = checks.cold or config.detector != "cusum"
        alarm = next((w for w in config.windows if scaled and checks.status[w][m] == "alarm"), None)
        cusum, since, seen, expected = 0.0, None, 0, 0.0
        if config.detector != "scaled" and checks.minute_mean is not None and not state.is_open:
            x, mu = int(checks.minute[m]), float(checks.minute_mean[m])
            cusum = max(0.0, state.cusum + x * math.log(config.cusum_shift) - (config.cusum_shift - 1.0) * mu)
            if cusum > 0.0:
                fresh = state.cusum == 0.0
                since = at - MINUTE if fresh else state.cusum_since
                seen = x + (0 if fresh else state.cusum_observed)
                expected = mu + (0.0 if fresh else state.cusum_expected)
        kept = replace(
            state, last_minute=at, cusum=cusum, cusum_since=since, cusum_observed=seen, cusum_expected=expected
        )
        if not state.is_open:
            if alarm is None and cusum < config.cusum_threshold:
                return kept
            window = alarm or config.longest
            if alarm is not None:
                method = self._method(checks, window, m)
                p = checks.p_value[window][m]
                shown = "PT1H" if checks.cold else window  # the floor counts an hour
            else:
                method = (
                    f"Poisson CUSUM x{config.cusum_shift:g} h={config.cusum_threshold:g}: {seen} matters since"
                    f" {since.strftime('%H:%M') if since else '?'} against {expected:.1f},"
                    f" {checks.days} {checks.kind}baseline days"
                )
                p, shown = float("nan"), window
            alert_id = uuid.uuid5(_ALERT_NAMESPACE, f"{series}|{at.isoformat()}")
            out.append(
                SlidingDecision(
                    "open",
                    series,
                    at,
                    shown,
                    int(checks.observed[shown if shown in checks.observed else window][m]),
                    float(checks.mean[window][m]),
                    method,
                    None if math.isnan(p) else float(p),
                    alert_id,
                )
            )
            # the floor's alert closes on its hour; a CUSUM alert on every window
            own = shown if alarm is not None and shown in config.windows else window if alarm else config.longest
            return SlidingState(alert_id=alert_id, opened_at=at, window=own, last_minute=at)
        own = state.window if state.window in config.windows else config.longest
        own_minutes = window_minutes(own)
        calm = alarm is None and all(
            checks.status[w][m] == "calm" or window_minutes(w) > own_minutes for w in config.windows
        )
        streak = state.calm_checks + 1 if calm else 0
        if streak < config.close_after:
            return replace(kept, calm_checks=streak)
        assert state.alert_id is not None
        out.append(
            SlidingDecision(
                "close",
                series,
                at,
                own,
                int(checks.observed[own][m]),
                float(checks.mean[own][m]),
                self._method(checks, own, m),
                None if checks.cold else float(checks.p_value[own][m]),
                state.alert_id,
            )
        )
        return SlidingState(last_minute=at)
