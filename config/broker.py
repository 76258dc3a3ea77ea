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
    # Lets an actor see its message (the pricing sync logs which attempt failed).
    "dramatiq.middleware.CurrentMessage",
    "django_dramatiq.middleware.AdminMiddleware",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    # LLM calls made by an actor are attributed like the code that sent the message (its trace).
    "apps.llm.accounting.trace_middleware.LLMContextMiddleware",
]


def broker_settings(*, redis_url: str | None, database_url: str, testing: bool = False) -> dict[str, Any]:
    if testing:
        # Tests run actors in-process on a StubBroker; end-to-end tests start real
        # workers against the real brokers in their own processes.
        return {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}, "MIDDLEWARE": MIDDLEWARE}
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
