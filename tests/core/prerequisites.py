"""What some tests need beyond Python packages; ``scripts/test-prerequisites`` (run by ``make test``)
provides it where it can. Where it could not, those tests are skipped with the reason it printed;
with ``TEST_PREREQUISITES=required`` (CI) they fail instead."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

CHROMIUM_MISSING = (
    "Chromium not found: install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH"
)
REDIS_MISSING = "Redis is not answering on 127.0.0.1:6379: install redis-server (apt-get install redis-server) or start a Redis there"


def missing(reason: str) -> NoReturn:
    if os.environ.get("TEST_PREREQUISITES") == "required":
        pytest.fail(reason)
    pytest.skip(reason)


def chromium() -> str:
    """The Chromium executable the browser tests drive (``CHROMIUM_PATH``, else ``chromium`` on PATH)."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        if not os.access(configured, os.X_OK):
            missing(f"CHROMIUM_PATH={configured} is not an executable")
        return configured
    return shutil.which("chromium") or missing(CHROMIUM_MISSING)
