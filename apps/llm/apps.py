from django.apps import AppConfig


class LLMConfig(AppConfig):
    """The LLM client library and the accounting of every call it makes."""

    name = "apps.llm"
    label = "llm"
    verbose_name = "LLM usage"
    default_auto_field = "django.db.models.BigAutoField"
