"""Fixtures for the simulator tests: one in-process simulator per module, fast clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from skyroute.simulator.harness import SimulatorThread

KINDS = [
    "server_error",
    "unavailable",
    "overloaded",
    "rate_limited",
    "bad_request",
    "context_length",
    "content_filter",
    "auth",
    "not_found",
    "timeout",
    "stream_cut",
    "stall",
    "bad_response",
]

SCENARIO = {
    "seed": 7,
    "time_scale": 100.0,
    "hang_s": 5,
    "defaults": {"error_rate": 0.0, "ttft_ms": {"p50": 100, "p95": 200}},
    "models": {
        **{f"err-{k}": {"error_rate": 1.0, "errors": {k: 1}} for k in KINDS},
        "tiny-context": {"context_window": 10},
        "short-*": {"completion_tokens": {"p50": 20, "p95": 30, "min": 5, "max": 40}},
    },
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SCENARIO) as s:
        yield s
