"""System checks run by ``migrate`` and ``check --database``: the server must have pgvector."""

from __future__ import annotations

from django.core.checks import Error, Tags, register
from django.db import connections

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
