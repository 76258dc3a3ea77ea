"""Plain helpers shared by test modules (fixtures live in the conftest.py files)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

#: tests/fixtures: the real files the tests read (each folder has its SOURCES.md or generate.py).
FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: Documents in every supported format, made by tests/fixtures/documents/generate.py.
DOCUMENTS = FIXTURES / "documents"
#: Real OpenRouter catalog snapshots (tests/fixtures/pricing/SOURCES.md).
CATALOGS = FIXTURES / "pricing"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def server_admin_connection() -> psycopg.Connection:
    """A connection to the server's maintenance database (ALTER DATABASE cannot target its own)."""
    from django.db import connection

    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"],
        port=s["PORT"],
        user=s["USER"],
        password=s["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


@contextmanager
def database_unreachable() -> Iterator[None]:
    """The test database refuses every connection (and drops the open ones) inside the block."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    admin = server_admin_connection()
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
        # The server ended this thread's connection too: Django opens a new one at its next query
        # instead of failing it (and the tests after this one) on the dead one.
        connection.close()
