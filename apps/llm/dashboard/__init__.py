"""The cost and usage dashboard's figures, computed from the rollups (the page is ``apps.llm.admin.dashboard``).

``filters`` reads what the page is narrowed to, ``queries`` computes the figures from the
rollups, ``accuracy`` the cost-accuracy panel (from the same figures: no query of its own),
``calls`` reads the two tables of single calls from the raw log under a time limit, and
``results`` holds the dataclasses they return.
"""

from apps.llm.accounting.records import LoggedCall
from apps.llm.dashboard.accuracy import PRICING, cost_accuracy, pricing_counts
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
    expensive_traces,
    model_rows,
    not_narrowed,
    tag_rows,
    with_current_spend,
)
from apps.llm.dashboard.results import (
    TOP_ROWS,
    BudgetUsage,
    CostAccuracy,
    DailySeries,
    Dashboard,
    Drift,
    Figure,
    PricingCount,
    RawTable,
    Totals,
    TraceRow,
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
    "PRICING",
    "TOP_ROWS",
    "BudgetUsage",
    "CostAccuracy",
    "DailySeries",
    "Dashboard",
    "DashboardFilters",
    "Drift",
    "Figure",
    "LoggedCall",
    "PricingCount",
    "RawTable",
    "Totals",
    "TraceRow",
    "UsageRow",
    "breakdowns",
    "budget_target",
    "budget_usage",
    "build_dashboard",
    "cost_accuracy",
    "daily_totals",
    "expensive_traces",
    "model_rows",
    "most_expensive_calls",
    "not_narrowed",
    "parse_feature",
    "parse_user",
    "percentile",
    "pricing_counts",
    "recent_failures",
    "rollup_today",
    "tag_rows",
    "user_label",
    "with_current_spend",
]
