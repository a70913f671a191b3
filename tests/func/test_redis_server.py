"""The Celery broker of the local stack: redis-server on loopback, gone after stop()."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from mainstem.errors import ServiceError
from mainstem.local.redis_server import REDIS_SERVER_ENV, RedisServer, ping, redis_server_binary
from mainstem.local.services import free_port


def test_the_server_answers_on_loopback_only_and_stops_with_no_process_left(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis", free_port())
    record = server.start()
    try:
        assert ping(server.port)
        listening = {
            c.laddr for c in psutil.Process(record.pid).net_connections() if c.status == "LISTEN"
        }
        assert listening == {("127.0.0.1", server.port)}
    finally:
        server.stop()
    assert not record.alive()
    assert not ping(server.port)
    assert not list((tmp_path / "redis").glob("*.rdb"))  # a broker that keeps nothing on disk


def test_a_taken_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(tmp_path / "redis", taken.getsockname()[1])
        with pytest.raises(ServiceError, match="is taken"):
            server.start()
    assert server.record is None


def test_a_configured_binary_that_is_missing_says_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDIS_SERVER_ENV, str(tmp_path / "no-such-redis-server"))
    with pytest.raises(ServiceError, match=REDIS_SERVER_ENV):
        redis_server_binary()
