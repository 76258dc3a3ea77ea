"""Dramatiq broker settings for django-dramatiq: Redis when configured, else Postgres."""

from __future__ import annotations

from typing import Any

# Listed explicitly: django-dramatiq's default list names a Prometheus middleware that
# Dramatiq 2 no longer ships.
MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.ShutdownNotifications",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Pipelines",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.AdminMiddleware",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
]


def broker_settings(*, redis_url: str | None, database_url: str) -> dict[str, Any]:
    if redis_url:
        return {
            "BROKER": "dramatiq.brokers.redis.RedisBroker",
            "OPTIONS": {"url": redis_url},
            "MIDDLEWARE": MIDDLEWARE,
        }
    # The queue lives in the project database (schema "dramatiq", created by a migration
    # of apps.core), so the embedded default needs no other service.
    return {
        "BROKER": "dramatiq_postgres.PostgresBroker",
        "OPTIONS": {"url": database_url, "results": False},
        "MIDDLEWARE": MIDDLEWARE,
    }
