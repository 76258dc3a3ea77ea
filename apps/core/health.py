"""Liveness checks of everything the site depends on, for ``GET /healthz``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from django.db import connection

from apps.core.models import Heartbeat
from apps.core.tasks import HEARTBEAT_SECONDS, SCHEDULER_HEARTBEAT

# Three missed beats before the scheduler counts as down.
SCHEDULER_MAX_AGE_SECONDS = 3 * HEARTBEAT_SECONDS


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def check_database() -> CheckResult:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        (version,) = cursor.fetchone()
    return CheckResult(True, f"PostgreSQL {version}")


def check_pgvector() -> CheckResult:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return CheckResult(False, "the vector extension is not installed (run migrate)")
    return CheckResult(True, f"pgvector {row[0]}")


def check_broker() -> CheckResult:
    broker = dramatiq.get_broker()
    name = type(broker).__name__
    if hasattr(broker, "client"):  # RedisBroker
        broker.client.ping()
        return CheckResult(True, name)
    if hasattr(broker, "pool"):  # dramatiq_postgres.PostgresBroker
        with broker.pool.connection(timeout=5) as conn:
            (queued,) = conn.execute("SELECT count(*) FROM dramatiq.queue WHERE state = 'queued'").fetchone()
        return CheckResult(True, f"{name}, {queued} queued")
    return CheckResult(True, name)


def check_scheduler() -> CheckResult:
    beat = Heartbeat.objects.filter(name=SCHEDULER_HEARTBEAT).first()
    if beat is None:
        return CheckResult(False, "no heartbeat yet: is `manage.py crontab` (and a worker) running?")
    age = beat.age_seconds()
    if age > SCHEDULER_MAX_AGE_SECONDS:
        return CheckResult(False, f"last heartbeat {age:.0f}s ago")
    return CheckResult(True, f"last heartbeat {age:.0f}s ago")


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "database": check_database,
    "pgvector": check_pgvector,
    "broker": check_broker,
    "scheduler": check_scheduler,
}


def run_checks() -> dict[str, CheckResult]:
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # a health check reports failures, it does not raise them
            results[name] = CheckResult(False, f"{type(exc).__name__}: {exc}")
    return results
