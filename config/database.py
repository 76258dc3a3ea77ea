"""The project database: ``DATABASE_URL`` when set, else the embedded server under var/."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from django_cfg import DatabaseConfig

from apps.core import embedded_postgres

from .env import Env


def database_url(env: Env) -> str:
    if env.database_url:
        return env.database_url
    return embedded_postgres.ensure_running(env.var_dir / "pgdata").url()


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
        options={**query, "pool": False},
    )
