"""The budgets admin: each budget with its use in the current period."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline

from apps.llm.admin.base import QuerystringGuard
from apps.llm.admin.formatting import UsdField, badge, money, money_column
from apps.llm.dashboard import (
    budget_target,
    with_current_spend,
)
from apps.llm.models import Budget, BudgetSpend

if TYPE_CHECKING:
    from apps.llm.dashboard.queries import BudgetWithSpend


class BudgetSpendInline(TabularInline):
    model = BudgetSpend
    fields = ["period_start", "spent_money", "reserved_money", "soft_warned_at"]
    readonly_fields = fields
    ordering = ["-period_start"]
    extra = 0
    can_delete = False
    verbose_name_plural = "spend per period"
    # Each row's title would be BudgetSpend.__str__, the raw amount; the columns say it all.
    show_title = False

    spent_money = money_column("spent")
    reserved_money = money_column("reserved", "reserved (in flight)")

    def has_add_permission(self, request: HttpRequest, obj: Budget | None = None) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(QuerystringGuard, ModelAdmin):
    """Budgets with their use in the current period against the soft and hard limits."""

    list_display = [
        "name",
        "scope",
        "target",
        "period",
        "spent_display",
        "reserved_display",
        "soft_use",
        "hard_use",
        "status",
        "is_active",
    ]
    list_filter = ["is_active", "scope", "period"]
    search_fields = ["name", "feature"]
    raw_id_fields = ["user"]
    inlines = [BudgetSpendInline]
    fields = ["name", "scope", "user", "feature", "period", "soft_limit", "hard_limit", "is_active"]

    def formfield_for_dbfield(self, db_field: models.Field, request: HttpRequest, **kwargs: Any) -> forms.Field | None:
        """The limits in dollars as people write them (``0.50``, ``$1,200``), not the column's 24 decimals."""
        if db_field.name in ("soft_limit", "hard_limit"):
            return db_field.formfield(form_class=UsdField, **kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BudgetWithSpend]:
        return with_current_spend(super().get_queryset(request).select_related("user"))

    @admin.display(description="target")
    def target(self, obj: Budget) -> str:
        return budget_target(obj)

    @admin.display(description="spent this period", ordering="current_spent")
    def spent_display(self, obj: BudgetWithSpend) -> str:
        return money(obj.current_spent)

    @admin.display(description="reserved (in flight)", ordering="current_reserved")
    def reserved_display(self, obj: BudgetWithSpend) -> str:
        return money(obj.current_reserved)

    @staticmethod
    def _use(spent: Decimal, limit: Decimal | None) -> str:
        if limit is None:
            return "—"
        share = float(spent / limit) if limit else 1.0
        colour = "#dc2626" if share >= 1 else "#ea580c" if share >= 0.8 else "#16a34a"
        return format_html(
            '<progress max="100" value="{}" style="width:70px;accent-color:{}"></progress> {}% of {}',
            f"{min(share * 100, 100):.0f}",
            colour,
            f"{share * 100:.0f}",
            money(limit),
        )

    @admin.display(description="soft limit")
    def soft_use(self, obj: BudgetWithSpend) -> str:
        return self._use(obj.current_spent, obj.soft_limit)

    @admin.display(description="hard limit")
    def hard_use(self, obj: BudgetWithSpend) -> str:
        return self._use(obj.current_spent, obj.hard_limit)

    @admin.display(description="status")
    def status(self, obj: BudgetWithSpend) -> str:
        if obj.hard_limit is not None and obj.current_spent >= obj.hard_limit:
            return badge("hard limit reached", "danger")
        if obj.soft_limit is not None and obj.current_spent >= obj.soft_limit:
            return badge("soft limit reached", "warning")
        return badge("ok", "success")
