"""The LLM app's models: prices, the request log, its traces, its daily rollups and budgets."""

from apps.llm.models.budgets import Budget, BudgetSpend
from apps.llm.models.prices import ModelPrice, ModelPriceQuerySet, PricingSyncRun
from apps.llm.models.requests import (
    HISTOGRAM_BUCKETS,
    LATENCY_BUCKETS_MS,
    LLMRequest,
    latency_bucket,
)
from apps.llm.models.rollups import (
    COUNTERS,
    KEPT_CALLS,
    SUMMARY_COUNTERS,
    KeptCalls,
    LLMUsageByModel,
    LLMUsageByTag,
    LLMUsageByUser,
    LLMUsageDaily,
    UsageSums,
    zero_counters,
)
from apps.llm.models.traces import LLMTrace

__all__ = [
    "COUNTERS",
    "HISTOGRAM_BUCKETS",
    "KEPT_CALLS",
    "LATENCY_BUCKETS_MS",
    "SUMMARY_COUNTERS",
    "Budget",
    "BudgetSpend",
    "KeptCalls",
    "LLMRequest",
    "LLMTrace",
    "LLMUsageByModel",
    "LLMUsageByTag",
    "LLMUsageByUser",
    "LLMUsageDaily",
    "ModelPrice",
    "ModelPriceQuerySet",
    "PricingSyncRun",
    "UsageSums",
    "latency_bucket",
    "zero_counters",
]
