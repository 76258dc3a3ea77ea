"""Plain helpers shared by test modules (fixtures live in the conftest.py files)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

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
