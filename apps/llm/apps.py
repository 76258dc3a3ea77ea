from typing import Any

from django.apps import AppConfig


class LLMConfig(AppConfig):
    """The LLM client library and the accounting of every call it makes."""

    name = "apps.llm"
    label = "llm"
    verbose_name = "LLM usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.llm.models import Budget

        # A budget created or edited mid-period counts the spend its period already has.
        post_save.connect(_recount_budget, sender=Budget, dispatch_uid="llm.recount_budget")


def _recount_budget(sender: type, instance: Any, **kwargs: Any) -> None:
    from apps.llm.accounting.budgets import recount_period_spend

    recount_period_spend(instance)
