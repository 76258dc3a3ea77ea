"""The cost and usage dashboard's figures, computed from the rollups (the page is ``apps.llm.admin.dashboard``).

``filters`` reads what the page is narrowed to, ``queries`` computes the figures from the
rollups, ``calls`` reads the two tables of single calls from the raw log under a time limit, and
``results`` holds the dataclasses they return.
"""

from apps.llm.accounting.records import LoggedCall
from apps.llm.dashboard.calls import most_expensive_calls, recent_failures
from apps.llm.dashboard.filters import (
    MAX_DAYS,
    NO_FEATURE,
    NO_USER,
    OTHER,
    PERIOD_LABELS,
    PERIODS,
    DashboardFilters,
    parse_feature,
    parse_user,
    rollup_today,
)
from apps.llm.dashboard.queries import (
    CHART_MODELS,
    breakdowns,
    budget_target,
    budget_usage,
    build_dashboard,
    daily_totals,
    model_rows,
    with_current_spend,
)
from apps.llm.dashboard.results import (
    TOP_ROWS,
    BudgetUsage,
    DailySeries,
    Dashboard,
    Figure,
    RawTable,
    Totals,
    UsageRow,
    percentile,
    user_label,
)

__all__ = [
    "CHART_MODELS",
    "MAX_DAYS",
    "NO_FEATURE",
    "NO_USER",
    "OTHER",
    "PERIODS",
    "PERIOD_LABELS",
    "TOP_ROWS",
    "BudgetUsage",
    "DailySeries",
    "Dashboard",
    "DashboardFilters",
    "Figure",
    "LoggedCall",
    "RawTable",
    "Totals",
    "UsageRow",
    "breakdowns",
    "budget_target",
    "budget_usage",
    "build_dashboard",
    "daily_totals",
    "model_rows",
    "most_expensive_calls",
    "parse_feature",
    "parse_user",
    "percentile",
    "recent_failures",
    "rollup_today",
    "user_label",
    "with_current_spend",
]
