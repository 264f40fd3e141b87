"""The end-to-end bench's arithmetic: the chart's rate, the cluster's CPU per matter, the statements per matter,
and ratios printed with enough digits to compare."""

from __future__ import annotations

import pytest

from tests.bench.common import CpuUse, ratio_text
from tests.bench.e2e_bench import (
    WATCHER_BACKEND,
    Sample,
    Statement,
    cluster_cpu_per_matter,
    statements_per,
    trailing_rate,
)


def sample(t: float, done: int) -> Sample:
    return Sample(t=t, offered=done, stages=dict.fromkeys(("registered", "routed"), done), lag=0)


def test_the_rate_is_a_slope_over_a_fixed_window_whatever_the_spacing_of_the_samples() -> None:
    # 100 matters/s throughout, sampled every 5 s and then (a drain) every 2 s, with one sample 0.1 s after another.
    times = [0, 5, 10, 15, 20, 25, 27, 29, 29.1, 31, 33]
    samples = [sample(t, int(100 * t)) for t in times]
    rates = trailing_rate(samples, lambda s: s.done, window_s=15)
    assert rates[0] == 0.0  # nothing behind the first
    assert rates[1:] == pytest.approx([100.0] * (len(times) - 1), rel=0.01)
    # A step: nothing done for 20 s, then 300/s: the windowed rate climbs over the window, never to 42,000/s.
    step = [sample(t, 0 if t <= 20 else int(300 * (t - 20))) for t in range(0, 60, 1)]
    rates = trailing_rate(step, lambda s: s.done, window_s=15)
    assert max(rates) == pytest.approx(300.0, rel=0.01)
    assert rates[25] == pytest.approx(300 * 5 / 15, rel=0.01)  # 5 s of the step within the last 15


def test_cluster_cpu_counts_services_kafka_and_postgresql_only() -> None:
    use = CpuUse(
        wall_s=10,
        by_group={
            "intake": 1.0,
            "routing": 0.5,
            "routing-2": 0.5,
            "kafka broker": 0.4,
            "postgresql (all backends)": 0.6,
            WATCHER_BACKEND: 3.0,
            "bench client (this process)": 2.0,
            "SMTP server (stand-in)": 1.0,
            "other xinfang-* processes (make up, tests)": 5.0,
        },
        machine_s=20,
    )
    ms, parts = cluster_cpu_per_matter(use, 1000)
    assert ms == pytest.approx(3.0)  # (1 + 0.5 + 0.5 + 0.4 + 0.6) s over 1,000 matters
    assert parts.startswith("intake 1.00")
    assert "stand-in" not in parts and "watcher" not in parts and "bench client" not in parts


def test_statements_per_matter_set_the_watcher_apart() -> None:
    before = {
        1: Statement(10, 10, 5.0, "INSERT INTO routing.matters ..."),
        2: Statement(1, 100, 1.0, "WITH repeats AS"),
    }
    after = {
        1: Statement(210, 210, 25.0, "INSERT INTO routing.matters ..."),
        2: Statement(21, 2_100, 41.0, "WITH repeats AS (SELECT ...)"),
        3: Statement(100, 0, 2.0, "SELECT  pg_try_advisory_xact_lock(hashtext($1))"),
        4: Statement(7, 7, 1.0, "SELECT unchanged"),
    }
    before[4] = after[4]
    lines = statements_per(before, after, n=100)
    assert lines[0] == (
        "statements per matter: the services' 3.0 statements, 2.0 rows, 0.220 ms executing;"
        " the bench watcher's 0.20, 20 rows, 0.400 ms"
    )
    assert "watcher WITH repeats AS" in lines[1]  # the costliest first
    assert len(lines) == 4 + 1 + 3  # the unchanged statement is left out; then the most called
    assert "SELECT pg_try_advisory_xact_lock(hashtext($1))" in lines[3]  # whitespace folded
    assert lines[4] == "the most called, per matter:"
    assert lines[5].split()[:2] == ["2.00", "calls"] and "INSERT INTO routing.matters" in lines[5]


def test_ratios_keep_three_significant_digits() -> None:
    assert ratio_text(0.0034) == "0.0034"
    assert ratio_text(0.00912) == "0.00912"
    assert ratio_text(0.98) == "0.98"
    assert ratio_text(1.234) == "1.23"
