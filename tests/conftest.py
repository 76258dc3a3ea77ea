from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from config.env import BASE_DIR

if TYPE_CHECKING:
    from apps.llm.client import LLMClient
    from apps.llm.testing.simulator import OpenAISimulator

#: The OpenAI key of clients pointed at a simulator, unless a test gives its own.
SIM_KEY = "sk-test-simulator-0000"


@pytest.fixture
def test_database_url(django_db_setup) -> str:
    """A DSN of the test database, for processes started by a test."""
    from django.db import connection

    s = connection.settings_dict
    auth = quote(s["USER"]) + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    host = s["HOST"]
    if host.startswith("/"):
        return f"postgresql://{auth}@/{s['NAME']}?host={quote(host)}&port={s['PORT']}"
    return f"postgresql://{auth}@{host}:{s['PORT']}/{s['NAME']}"


class ManagedProcess:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 (the child writes to it until stop())
        self.popen = subprocess.Popen(
            args, cwd=BASE_DIR, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait()
        self._log_file.close()
        return self.popen.returncode


@pytest.fixture
def start_process(tmp_path) -> Iterator[Callable[..., ManagedProcess]]:
    """Start ``manage.py`` commands (or any argv) as real processes; all are stopped at teardown."""
    started: list[ManagedProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, name: str = "process") -> ManagedProcess:
        argv = [sys.executable, "manage.py", *args] if args[0] != sys.executable else list(args)
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        process = ManagedProcess(argv, child_env, tmp_path / f"{name}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, django_db_blocker) -> None:
    """One test database per pytest process, so concurrent runs on one server never collide."""
    from django.conf import settings

    test = settings.DATABASES["default"].setdefault("TEST", {})
    base = test.get("NAME") or "test_" + settings.DATABASES["default"]["NAME"]
    test["NAME"] = f"{base}_{os.getpid()}"
    with django_db_blocker.unblock():
        _drop_test_databases_of_dead_runs(base)


def _drop_test_databases_of_dead_runs(base: str) -> None:
    """A killed run cannot drop its database: the next run does."""
    import psutil
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{base}\\_%"])
        for (name,) in cursor.fetchall():
            pid = name.removeprefix(f"{base}_")
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def price_table(transactional_db) -> None:
    """The bundled prices, for transactional tests: their teardown empties every table,
    including the rows the data migration loaded."""
    from apps.llm.models import ModelPrice
    from apps.llm.pricing.store import load_bundled_prices

    if not ModelPrice.objects.exists():
        load_bundled_prices(ModelPrice)


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker):
    """Threads (live server, writers) can leave connections open; the test database can
    only be dropped at the end once they are gone."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def media_in_tmp(settings, tmp_path) -> None:
    """Uploaded files go to the test's tmp_path (opt in with ``pytest.mark.usefixtures``)."""
    settings.MEDIA_ROOT = tmp_path / "media"


# -- the OpenAI simulator and clients pointed at it ------------------------------------------------


@pytest.fixture
def make_sim() -> Iterator[Callable[..., OpenAISimulator]]:
    """Start loopback ``OpenAISimulator`` servers (keyword arguments: its knobs); all are
    stopped at teardown."""
    from apps.llm.testing.simulator import OpenAISimulator

    with contextlib.ExitStack() as running:
        yield lambda **knobs: running.enter_context(OpenAISimulator(**knobs))


@pytest.fixture
def sim(make_sim) -> OpenAISimulator:
    """A fresh simulator for the test, stopped at teardown."""
    return make_sim()


@pytest.fixture
def make_client() -> Iterator[Callable[..., LLMClient]]:
    """Build ``LLMClient`` objects for a test; all are closed at teardown.

    ``make_client(sim, key=..., **kwargs)``: ``sim`` (optional) points the OpenAI provider at
    that simulator with the API key ``key``; every other keyword argument goes to ``LLMClient``
    (providers, ``recorders``, ``retry``, ``timeout``...). Unless given, a client is never
    configured from the environment and has its own in-memory cache.
    """
    from django.core.cache.backends.locmem import LocMemCache

    from apps.llm.client import LLMClient

    clients: list[LLMClient] = []

    def make(sim: OpenAISimulator | None = None, *, key: str = SIM_KEY, **kwargs) -> LLMClient:
        if sim is not None:
            kwargs.setdefault("apikey_openai", key)
            kwargs.setdefault("openai_base_url", sim.base_url)
        kwargs.setdefault("configure_from_env", False)
        kwargs.setdefault("cache_backend", LocMemCache(f"test-{uuid.uuid4()}", {}))
        client = LLMClient(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def stub_broker():
    """The tests' Dramatiq StubBroker, emptied before and after (dead letters would fail others' joins)."""
    import dramatiq

    broker = dramatiq.get_broker()
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium through Playwright (skipped with what to install when missing; failed in CI)."""
    from playwright.sync_api import sync_playwright

    from tests.core.prerequisites import chromium

    executable = chromium()
    # Playwright's sync API runs an event loop in this thread; the live server answers in its own
    # threads, and tests touch the ORM in this one only between page loads.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
