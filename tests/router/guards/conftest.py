"""Fixtures of the guard suites: a real redis-server per test that asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_server import RedisProcess, start_redis


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    server = start_redis()
    yield server
    server.stop()
