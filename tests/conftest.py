"""Shared by every tier."""

from __future__ import annotations

import os

import pytest

from xinfang_shared.telemetry import configure_tracing

# Settings default to production (which refuses the dev secrets); every tier runs as a test deployment, and
# the service processes the tests start inherit it.
os.environ.setdefault("ENVIRONMENT", "test")


@pytest.fixture(scope="session", autouse=True)
def recorded_traces() -> None:
    """Tests read spans (trace propagation, personal data kept out), so the process's one tracer provider
    records them, as it does in production when an OTLP collector is configured."""
    configure_tracing("tests", record=True)
