from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Platform plumbing: pgvector, the task broker's schema, health and heartbeats."""

    name = "apps.core"
    label = "core"
    verbose_name = "Platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.core import checks  # noqa: F401  (registers the system checks)
