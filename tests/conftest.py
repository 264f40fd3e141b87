"""Shared by every tier."""

from __future__ import annotations

import os

import pytest

from tests import infra
from xinfang_shared.telemetry import configure_tracing

# Settings default to production (which refuses the dev secrets); every tier runs as a test deployment, and
# the service processes the tests start inherit it.
os.environ.setdefault("ENVIRONMENT", "test")


def pytest_report_header() -> str:
    """Which Kafka and PostgreSQL the integration tier uses (tests/infra.py)."""
    return infra.describe()


@pytest.fixture(scope="session", autouse=True)
def recorded_traces() -> None:
    """Tests read spans (trace propagation, personal data kept out), so the process's one tracer provider
    records them, as it does in production when an OTLP collector is configured."""
    configure_tracing("tests", record=True)
