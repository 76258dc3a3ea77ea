"""System checks: the server must have pgvector (``migrate``, ``check --database``); the admin
should not be at /admin/ in production (``check --deploy``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.checks import Error, Tags, register
from django.db import connections
from django.urls import NoReverseMatch, reverse

HINT = (
    "Use a PostgreSQL server with pgvector installed, for example the pgvector/pgvector:pg17 "
    "Docker image, or unset DATABASE_URL to use the embedded server."
)


def pgvector_errors(connection) -> list[Error]:
    """``connection``: a Django or psycopg connection to the server to check."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone():
            return []
    return [
        Error(
            "The database server needs the pgvector extension ('vector'), which it does not have.",
            hint=HINT,
            id="core.E001",
        )
    ]


@register(Tags.database)
def check_pgvector(app_configs, databases=None, **kwargs) -> list[Error]:
    errors: list[Error] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            errors.append(Error(f"Database {alias!r} must be PostgreSQL, not {connection.vendor}.", id="core.E002"))
        else:
            errors.extend(pgvector_errors(connection))
    return errors


@register(Tags.security, deploy=True)
def check_admin_url(app_configs, **kwargs) -> list[checks.Warning]:
    """django_cfg.W011 with the project's variable in its hint (that check is silenced)."""
    try:
        admin_url = reverse("admin:index")
    except NoReverseMatch:
        return []
    if settings.DEBUG or admin_url != "/admin/":
        return []
    return [
        checks.Warning(
            "The admin is at /admin/, the first path scanners try.",
            hint="Set ADMIN_URL to an unguessable path, e.g. "
            "python -c \"import secrets; print(secrets.token_urlsafe(16) + '/')\"",
            id="core.W001",
        )
    ]
