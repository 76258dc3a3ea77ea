from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    """Documents embedded into pgvector by Dramatiq workers, and search over them."""

    name = "apps.knowledge"
    label = "knowledge"
    verbose_name = "Knowledge base"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the receiver that deletes a deleted document's file.
        from apps.knowledge import versions  # noqa: F401
