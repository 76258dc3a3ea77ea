"""What a demo run wrote to the request log, tallied from the records themselves.

Counting the records as they are written (rather than querying the log afterwards) reports this
run only, even when earlier demo data or real traffic share the log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from apps.llm.accounting.records import SUCCESS, CallRecord

__all__ = ["DemoSummary", "ModelTally"]


@dataclass
class ModelTally:
    """One model's line in the command's report."""

    calls: int = 0
    errors: int = 0
    cache_hits: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass
class DemoSummary:
    """What a demo run wrote to the request log (from the very records it wrote)."""

    calls: int = 0
    errors: int = 0
    retried: int = 0
    cache_hits: int = 0
    cost: Decimal = Decimal(0)
    provider_cost: Decimal = Decimal(0)
    saved_cost: Decimal = Decimal(0)
    days: set[date] = field(default_factory=set)
    features: Counter = field(default_factory=Counter)
    models: dict[str, ModelTally] = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    #: ``llm_trace`` blocks run, and how many of them ended in an error.
    traces: int = 0
    failed_traces: int = 0

    def add_trace(self, *, ok: bool) -> None:
        self.traces += 1
        self.failed_traces += not ok

    def add(self, record: CallRecord) -> None:
        ok = record.status == SUCCESS
        self.calls += 1
        self.errors += not ok
        self.retried += ok and record.attempts > 1
        self.cache_hits += record.cached
        self.cost += record.cost or 0
        self.provider_cost += record.provider_cost or 0
        self.saved_cost += record.saved_cost or 0
        self.days.add(record.created_at.date())
        self.features[record.feature] += 1
        tally = self.models.setdefault(record.model or record.requested_model, ModelTally())
        tally.calls += 1
        tally.errors += not ok
        tally.cache_hits += record.cached
        tally.tokens += 0 if record.cached else record.usage.total_tokens
        tally.cost += record.cost or 0
