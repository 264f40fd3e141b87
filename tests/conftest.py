"""Shared by every tier."""

from __future__ import annotations

import pytest

from xinfang_shared.telemetry import configure_tracing


@pytest.fixture(scope="session", autouse=True)
def recorded_traces() -> None:
    """Tests read spans (trace propagation, personal data kept out), so the process's one tracer provider
    records them, as it does in production when an OTLP collector is configured."""
    configure_tracing("tests", record=True)
