"""Spending limits and their spend per period."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from apps.llm.models.fields import money_field
from apps.llm.money import usd


class Budget(models.Model):
    """A spending limit per day or month: for everything, one user, or one feature.

    Crossing ``soft_limit`` logs a warning and flags the budget; a call that would cross
    ``hard_limit`` (by its cost estimate) is refused before it is sent.
    """

    class Scope(models.TextChoices):
        GLOBAL = "global"
        USER = "user"
        FEATURE = "feature"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.GLOBAL)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="llm_budgets"
    )
    feature = models.CharField(max_length=100, blank=True, default="")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTH)
    soft_limit = money_field(null=True, blank=True, help_text="USD; crossing it warns.")
    hard_limit = money_field(null=True, blank=True, help_text="USD; calls that would cross it are refused.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope="global", user__isnull=True, feature="")
                    | Q(scope="user", user__isnull=False, feature="")
                    | Q(scope="feature", user__isnull=True) & ~Q(feature="")
                ),
                name="llm_budget_scope_matches_target",
            ),
            models.CheckConstraint(
                condition=Q(soft_limit__isnull=True) | Q(hard_limit__isnull=True) | Q(soft_limit__lte=F("hard_limit")),
                name="llm_budget_soft_below_hard",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def period_start(self, today):
        return today.replace(day=1) if self.period == self.Period.MONTH else today

    def applies_to(self, user_id: int | None, feature: str) -> bool:
        if self.scope == self.Scope.USER:
            return user_id is not None and self.user_id == user_id
        if self.scope == self.Scope.FEATURE:
            return self.feature == feature
        return True


class BudgetSpend(models.Model):
    """Spend of one budget in one period: settled cost plus estimates of calls in flight."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="spends")
    period_start = models.DateField()
    spent = money_field(default=0)
    reserved = money_field(default=0)
    soft_warned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget", "period_start"], name="llm_budget_spend_period")]

    def __str__(self) -> str:
        return f"{self.budget} from {self.period_start}: {usd(self.spent)}"
