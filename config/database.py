"""The project database: ``DATABASE_URL`` when set, else the embedded server under var/."""

from __future__ import annotations

import re
import subprocess
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from django_cfg import DatabaseConfig

from apps.core import embedded_postgres

from .env import BASE_DIR, ConfigError, Env


def database_url(env: Env) -> str:
    """Raises ``ConfigError`` when the embedded server (used without DATABASE_URL) cannot start."""
    if env.database_url:
        return env.database_url
    pgdata = env.var_dir / "pgdata"
    try:
        return embedded_postgres.ensure_running(pgdata).url()
    except (OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        raise ConfigError(
            f"DATABASE_URL is unset and the embedded server in {_shown(pgdata)} did not start "
            f"({_reason(exc)}); see its log {_shown(pgdata / 'log')}"
        ) from None


def connection_failure(error: BaseException, settings_dict: dict[str, Any], embedded_dir: Path | None) -> str | None:
    """One line for a failure to connect to the database, naming DATABASE_URL; None for other errors.

    Never contains the password (libpq's messages do not, and it is masked in case one did).
    """
    if not any(frame.name == "get_new_connection" for frame in traceback.extract_tb(error.__traceback__)):
        return None  # raised by a query, not by connecting
    reason = _reason(error)
    if settings_dict.get("PASSWORD"):
        reason = reason.replace(str(settings_dict["PASSWORD"]), "***")
    if embedded_dir is not None:
        return (
            f"DATABASE_URL is unset and the embedded server in {_shown(embedded_dir)} does not answer ({reason}); "
            f"see its log {_shown(embedded_dir / 'log')}, or run `python -m config start`"
        )
    host = settings_dict.get("HOST") or "localhost"
    where = host if host.startswith("/") else f"{host}:{settings_dict.get('PORT') or 5432}"
    return f"DATABASE_URL: cannot connect to {where} ({reason})"


def _reason(error: BaseException) -> str:
    """The cause in libpq's (or pg_ctl's) message, e.g. "Connection refused"."""
    if isinstance(error, subprocess.CalledProcessError):
        return f"{Path(str(error.cmd[0])).name} exited with status {error.returncode}"
    if isinstance(error, subprocess.TimeoutExpired):
        return f"no answer after {error.timeout:g} s"
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = text.rsplit(" failed: ", 1)[-1]
    return re.sub(r"^(FATAL|ERROR):\s+|\[Errno -?\d+\]\s*", "", text).strip()


def _shown(path: Path) -> str:
    """``path`` relative to the project directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(BASE_DIR))
    except ValueError:
        return str(path)


def database_config(url: str) -> DatabaseConfig:
    """A DSN as django-cfg's discrete fields.

    ``DatabaseConfig.from_url`` keeps the query string in the test database name, so a
    unix-socket DSN (``?host=/path&port=5432``) is split here instead.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return DatabaseConfig(
        engine="django.db.backends.postgresql",
        name=unquote(parts.path.lstrip("/")),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=query.pop("host", None) or parts.hostname or "localhost",
        port=int(query.pop("port", "") or parts.port or 5432),
        sslmode=query.pop("sslmode", "prefer"),
        # Persistent connections instead of django-cfg's default pool of 10 per process:
        # web, worker threads and scheduler would exhaust a small server's connections.
        conn_max_age=60,
        conn_health_checks=True,
        atomic_requests=False,
        # Without a timeout, an unreachable host holds `migrate` for minutes before it fails.
        options={"connect_timeout": 10, **query, "pool": False},
    )
