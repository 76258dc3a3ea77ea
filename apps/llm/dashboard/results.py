"""The dashboard's figures as plain dataclasses: totals, headline figures, rows and tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from apps.llm.accounting.records import LoggedCall
from apps.llm.dashboard.filters import DashboardFilters
from apps.llm.models import LATENCY_BUCKETS_MS, zero_counters
from apps.llm.models.requests import HISTOGRAM_BUCKETS
from apps.llm.types import cache_misses

#: Rows in each "top" table and breakdown chart.
TOP_ROWS = 10


# -- latency percentiles from histograms ----------------------------------------------------------


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, in ms; None when it is empty.

    Calls are assumed spread evenly inside their bucket (linear interpolation between its
    bounds), so the answer lies in the bucket the exact value is in. The last bucket has no
    upper bound: a quantile falling there is reported as its lower bound.
    """
    total = sum(histogram)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = LATENCY_BUCKETS_MS[index - 1] if index else 0
            if index >= len(LATENCY_BUCKETS_MS):
                return float(lower)
            return lower + (LATENCY_BUCKETS_MS[index] - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def _add_histograms(into: list[int], other: Sequence[int]) -> None:
    for i, n in enumerate(other):
        into[i] += n


@dataclass
class Totals:
    """Sums of rollup rows: every counter of ``COUNTERS`` (``totals.cost``...) and the latency histogram.

    Tokens are those billed: cache hits spent none (their cost is in ``saved_cost``).
    """

    sums: dict[str, Any] = field(default_factory=zero_counters)
    latency_histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BUCKETS)

    def __getattr__(self, name: str) -> Any:
        sums = self.__dict__.get("sums", {})  # not self.sums: copy and pickle ask before __init__
        if name in sums:
            return sums[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def add(self, other: Totals) -> None:
        for name, value in other.sums.items():
            self.sums[name] += value or 0
        _add_histograms(self.latency_histogram, other.latency_histogram)

    @property
    def input_tokens(self) -> int:
        """Prompt tokens read at the full price (cache reads are cheaper and counted apart)."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def cache_misses(self) -> int:
        return cache_misses(self.requests, self.cache_hits, self.failures, self.refusals)

    @property
    def cache_hit_rate(self) -> float | None:
        looked_up = self.cache_hits + self.cache_misses
        return self.cache_hits / looked_up if looked_up else None

    @property
    def sent(self) -> int:
        """Calls sent to a provider: every call but those refused before sending (budgets)."""
        return self.requests - self.refusals

    @property
    def error_rate(self) -> float | None:
        """Failures among the calls sent: a refusal is not an error (nor is it counted as a call that could fail)."""
        return self.failures / self.sent if self.sent else None

    @property
    def avg_cost(self) -> Decimal | None:
        return self.cost / self.requests if self.requests else None

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.latency_histogram, 0.5)

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.latency_histogram, 0.95)


@dataclass(frozen=True)
class Figure:
    """One headline number with its value over the previous period of the same length."""

    key: str
    label: str
    value: Decimal | int | float | None
    previous: Decimal | int | float | None
    #: "money", "count", "rate" (a fraction) or "ms".
    kind: str
    #: Whether a fall is good news (spend, errors, latency), a rise (cache hits), or neither.
    lower_is_better: bool | None = None

    @property
    def change(self) -> float | None:
        """Relative change; for rates the difference in points (0.02 = 2 points)."""
        if self.value is None or self.previous is None:
            return None
        if self.kind == "rate":
            return float(self.value) - float(self.previous)
        if not self.previous:
            return None
        if isinstance(self.value, float) or isinstance(self.previous, float):
            return (float(self.value) - float(self.previous)) / float(self.previous)
        return float((self.value - self.previous) / self.previous)


def headline(current: Totals, previous: Totals) -> list[Figure]:
    return [
        Figure("spend", "Spend", current.cost, previous.cost, "money", True),
        Figure("requests", "Requests", current.requests, previous.requests, "count"),
        Figure("tokens", "Tokens", current.total_tokens, previous.total_tokens, "count"),
        Figure("cache_hit_rate", "Cache hit rate", current.cache_hit_rate, previous.cache_hit_rate, "rate", False),
        Figure("saved", "Saved by the cache", current.saved_cost, previous.saved_cost, "money", False),
        Figure("error_rate", "Error rate", current.error_rate, previous.error_rate, "rate", True),
        Figure("refused", "Refused by budgets", current.refusals, previous.refusals, "count"),
        Figure("p50", "Median latency", current.p50_ms, previous.p50_ms, "ms", True),
        Figure("p95", "p95 latency", current.p95_ms, previous.p95_ms, "ms", True),
    ]


@dataclass(frozen=True)
class DailySeries:
    """One value per day of the period (days without calls included, as zeros)."""

    days: list[date]
    requests: list[int]
    failures: list[int]
    refusals: list[int]
    cost: list[Decimal]
    input_tokens: list[int]
    cached_tokens: list[int]
    output_tokens: list[int]
    p50_ms: list[float | None]
    p95_ms: list[float | None]
    #: Spend per day of the top models, then "Other": (label, filters of that series, values).
    cost_by_model: list[tuple[str, DashboardFilters | None, list[Decimal]]]


@dataclass(frozen=True)
class UsageRow:
    """One model, user or feature over the period; ``filters`` select exactly its calls."""

    label: str
    filters: DashboardFilters
    requests: int
    failures: int
    cache_hits: int
    tokens: int
    cost: Decimal
    saved_cost: Decimal
    refusals: int = 0
    #: Calls with our cost and the provider's own (models only; see ``CostAccuracy``).
    reported_calls: int = 0
    reported_cost: Decimal = Decimal(0)
    reported_provider_cost: Decimal = Decimal(0)

    @property
    def avg_cost(self) -> Decimal | None:
        return self.cost / self.requests if self.requests else None


@dataclass(frozen=True)
class BudgetUsage:
    """A budget's use in its current period ("reached": settled spend at or past the limit)."""

    budget_id: int
    name: str
    scope: str
    target: str
    period: str
    period_start: date
    spent: Decimal
    reserved: Decimal
    soft_limit: Decimal | None
    hard_limit: Decimal | None

    @staticmethod
    def _share(amount: Decimal, limit: Decimal | None) -> float | None:
        return float(amount / limit) if limit else None

    @property
    def soft_share(self) -> float | None:
        return self._share(self.spent, self.soft_limit)

    @property
    def hard_share(self) -> float | None:
        return self._share(self.spent, self.hard_limit)

    @property
    def soft_reached(self) -> bool:
        return self.soft_limit is not None and self.spent >= self.soft_limit

    @property
    def hard_reached(self) -> bool:
        return self.hard_limit is not None and self.spent >= self.hard_limit

    @property
    def status(self) -> str:
        return "hard" if self.hard_reached else "soft" if self.soft_reached else "ok"


@dataclass(frozen=True)
class PricingCount:
    """How many calls of the period were priced one way (``CostAccuracy.pricing``), and their share of all calls."""

    key: str
    label: str
    calls: int
    share: float | None


@dataclass(frozen=True)
class Drift:
    """Our cost against the provider's own (OpenRouter's ``usage.cost``) over the calls that have both.

    ``filters`` select the model's calls (None: the total over every model).
    """

    label: str
    filters: DashboardFilters | None
    calls: int
    ours: Decimal
    theirs: Decimal

    @property
    def amount(self) -> Decimal:
        """Ours minus theirs: positive when we count more than the provider charged."""
        return self.ours - self.theirs

    @property
    def share(self) -> Decimal | None:
        """The drift relative to the provider's cost (None when they reported 0)."""
        return self.amount / self.theirs if self.theirs else None


@dataclass(frozen=True)
class CostAccuracy:
    """How trustworthy the period's costs are, from the rollups' counters alone.

    ``pricing``: every call of the period once, by how its cost is known: priced exactly (the
    provider's token counts at a known price), estimated (tokens counted locally or an estimated
    price), unpriced (answered, no price known), refused (by a budget, before sending: cost 0),
    failed (an error: nothing to price). ``drifts``: per model whose provider reports its own
    cost, ours against theirs; ``total``: the same over every model.
    """

    requests: int
    pricing: list[PricingCount]
    drifts: list[Drift]
    total: Drift

    def count(self, key: str) -> int:
        return next(p.calls for p in self.pricing if p.key == key)


@dataclass(frozen=True)
class RawTable:
    rows: list[LoggedCall]
    #: The query hit RAW_LOG_TIMEOUT_MS: the table is empty for that reason, not for lack of data.
    timed_out: bool = False


@dataclass(frozen=True)
class FilterOptions:
    """What the filters offer: the values seen in the period's rollups."""

    providers: list[str]
    models: list[tuple[str, str]]
    features: list[str]
    #: (filter value, label) of the period's biggest spenders (MAX_CHOICES).
    users: list[tuple[str, str]]
    #: The period's tags, the biggest spenders (MAX_CHOICES), alphabetical.
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TraceRow:
    """A trace (its root span) with the totals of all its calls."""

    id: UUID
    name: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    user_id: int | None
    subject_type_id: int | None
    subject_id: str | None
    requests: int
    failures: int
    cache_hits: int
    total_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class Dashboard:
    filters: DashboardFilters
    previous_filters: DashboardFilters
    current: Totals
    previous: Totals
    figures: list[Figure]
    daily: DailySeries
    models: list[UsageRow]
    users: list[UsageRow]
    features: list[UsageRow]
    budgets: list[BudgetUsage]
    options: FilterOptions
    accuracy: CostAccuracy
    expensive: RawTable | None
    failures: RawTable | None
    #: Spend by tag (``queries.tag_rows``) and the costliest traces of the period.
    tags: list[UsageRow] = field(default_factory=list)
    traces: list[TraceRow] = field(default_factory=list)
    #: Sections the filters cannot narrow ("models", "users", "features", "drifts", "tags",
    #: "traces"): the page says so instead of showing other calls' figures.
    not_narrowed: frozenset[str] = frozenset()

    @property
    def budgets_reached(self) -> list[BudgetUsage]:
        return [b for b in self.budgets if b.status != "ok"]


def user_label(user_id: int | None, email: str | None = None, username: str | None = None) -> str:
    if user_id is None:
        return "(no user)"
    return email or username or f"user #{user_id} (deleted)"
