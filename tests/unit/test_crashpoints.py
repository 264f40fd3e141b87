"""Crash points (xinfang_shared/crashpoints.py): a process that reaches the point XINFANG_CRASH_AT names dies by
SIGKILL there, at the n-th passage; unset, or in production, nothing happens."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from xinfang_shared import crashpoints

# Reaches `relay.acked` five times, printing (unbuffered) how many passages it survived, then `done`; an
# unreached `when=False` passage in between must not count.
SCRIPT = textwrap.dedent(
    """
    import sys
    from xinfang_shared.crashpoints import crash_point
    for i in range(1, 6):
        crash_point("batch.committed")
        crash_point("relay.acked", when=False)
        crash_point("relay.acked")
        print(i, flush=True)
    print("done", flush=True)
    """
)


def _run(crash_at: str | None, environment: str | None = "test") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XINFANG_CRASH_AT", "ENVIRONMENT")}
    if crash_at is not None:
        env["XINFANG_CRASH_AT"] = crash_at
    if environment is not None:
        env["ENVIRONMENT"] = environment
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_reaching_the_point_kills_the_process_with_sigkill() -> None:
    result = _run("relay.acked")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout == ""  # killed at the first passage, before anything after it
    assert "crash point relay.acked#1: SIGKILL" in result.stderr


def test_the_count_picks_the_nth_passage() -> None:
    result = _run("relay.acked@3")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split() == ["1", "2"]
    assert "crash point relay.acked#3: SIGKILL" in result.stderr


@pytest.mark.parametrize("environment", ["test", "local"])
def test_it_fires_in_test_and_local(environment: str) -> None:
    assert _run("relay.acked@2", environment).returncode == -signal.SIGKILL


def test_unset_nothing_happens() -> None:
    result = _run(None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2", "3", "4", "5", "done"]


def test_another_point_named_nothing_happens_here() -> None:
    result = _run("notify.accepted")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "done"


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_refused_outside_test_and_local(environment: str) -> None:
    result = _run("relay.acked", environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "done"


def test_a_name_that_is_no_point_fails_at_import() -> None:
    result = _run("relay.ackd")
    assert result.returncode == 1
    assert "no crash point 'relay.ackd'" in result.stderr


@pytest.mark.parametrize("spec", ["relay.acked@0", "relay.acked@x", "relay.acked@-1"])
def test_a_bad_count_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="count"):
        crashpoints.parse(spec)


def test_parse() -> None:
    assert crashpoints.parse("batch.committed") == ("batch.committed", 1)
    assert crashpoints.parse("notify.accepted@12") == ("notify.accepted", 12)


def test_unarmed_in_this_process() -> None:
    assert "XINFANG_CRASH_AT" not in os.environ
    assert crashpoints.armed() is None
    crashpoints.crash_point("relay.acked")  # nothing


def test_the_service_disarms_it_when_its_settings_say_production(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(crashpoints, "_armed", crashpoints._Armed("relay.acked", 1))
    monkeypatch.setattr(crashpoints, "_refused", None)
    with caplog.at_level(logging.WARNING, logger=crashpoints.__name__):
        crashpoints.announce("production")
    assert crashpoints.armed() is None
    assert "refused in ENVIRONMENT=production" in caplog.text
    crashpoints.crash_point("relay.acked")  # disarmed: nothing


def test_the_service_logs_an_armed_point(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(crashpoints, "_armed", crashpoints._Armed("relay.acked", 2))
    monkeypatch.setattr(crashpoints, "_refused", None)
    with caplog.at_level(logging.WARNING, logger=crashpoints.__name__):
        crashpoints.announce("test")
    assert crashpoints.armed() == "relay.acked@2"
    assert "crash point armed" in caplog.text
