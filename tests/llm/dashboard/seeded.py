"""Seeded calls for the dashboard and usage admin tests, and the figures expected of them.

Calls are written with ``write_records`` (rows and rollups exactly as in production); every
expected figure is a plain Python sum over the ``CallRecord`` objects themselves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from apps.llm import dashboard as dash
from apps.llm.accounting.records import ERROR, REFUSED, SUCCESS, CallRecord
from apps.llm.dashboard import DashboardFilters
from apps.llm.types import Usage

DASHBOARD = "/admin/llm/llmusagedaily/dashboard/"
LOG = "/admin/llm/llmrequest/"
TODAY = dash.rollup_today()
# A 7-day period ending today, and the 7 days before it (the comparison period).
START = TODAY - timedelta(days=6)
PREVIOUS_START = START - timedelta(days=7)

MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("openrouter", "anthropic/claude-3.5-sonnet"),
    ("openrouter", "google/gemini-2.0-flash"),
    ("openrouter", "meta-llama/llama-3.3-70b"),
    ("openai", "o3-mini"),
    ("openrouter", "mistralai/mistral-large"),
    ("openai", "text-embedding-3-small"),
]
FEATURES = ["support.reply", "search", "", "summary"]


# -- data ------------------------------------------------------------------------------------------


@dataclass
class Seed:
    records: list[CallRecord]
    users: list  # two users; calls also go to no user

    def select(
        self,
        start: date,
        end: date,
        *,
        provider: str = "",
        model: str = "",
        user_id: int | None = None,
        no_user: bool = False,
        feature: str | None = None,
    ) -> list[CallRecord]:
        return [
            r
            for r in self.records
            if start <= r.created_at.date() <= end
            and (not provider or r.provider == provider)
            and (not model or r.model == model)
            and (user_id is None or r.user_id == user_id)
            and (not no_user or r.user_id is None)
            and (feature is None or r.feature == feature)
        ]


def make_records(users, rng: random.Random, days: int = 14, per_day: int = 14) -> list[CallRecord]:
    records = []
    for offset in range(days):
        day = TODAY - timedelta(days=offset)
        for n in range(per_day + offset % 3):
            provider, model = MODELS[rng.randrange(len(MODELS))] if n % 5 else MODELS[0]
            user = rng.choice([*users, None])
            failed = rng.random() < 0.12
            # A budget refused the call before sending: no tokens, cost 0, not an error.
            refused = not failed and rng.random() < 0.05
            cached = not failed and not refused and rng.random() < 0.2
            prompt, cached_tokens, completion = rng.randint(10, 4000), 0, rng.randint(0, 800)
            if rng.random() < 0.4:
                cached_tokens = rng.randint(0, prompt)
            cost = None if failed else Decimal(rng.randint(1, 9_000_000)) / Decimal(10**9)
            if not failed and not refused and not cached and rng.random() < 0.05:
                cost = None  # unknown price: counted, never a silent 0
            if refused:
                cost = Decimal(0)
            answered = not failed and not refused
            priced = answered and not cached and cost is not None
            # Priced from locally counted tokens (a stream without usage) or an estimated price.
            usage_estimated = priced and rng.random() < 0.06
            price_estimated = priced and not usage_estimated and rng.random() < 0.04
            # OpenRouter reports what it charged: mostly what we computed, sometimes not (drift).
            provider_cost = None
            if priced and provider == "openrouter" and rng.random() < 0.8:
                drift = rng.choice([Decimal(0), Decimal(0), Decimal(0), Decimal("0.02"), Decimal("-0.015")])
                provider_cost = (cost * (1 + drift)).quantize(Decimal("1e-12"))
            records.append(
                CallRecord(
                    endpoint="chat",
                    provider=provider,
                    requested_model=model,
                    model=model,
                    status=ERROR if failed else REFUSED if refused else SUCCESS,
                    usage=Usage()
                    if not answered
                    else Usage(
                        prompt_tokens=prompt,
                        cached_tokens=cached_tokens,
                        completion_tokens=completion,
                        total_tokens=prompt + completion,
                    ),
                    cost=Decimal(0) if cached else cost,
                    provider_cost=provider_cost,
                    saved_cost=cost if cached else None,
                    cached=cached,
                    usage_estimated=usage_estimated,
                    price_estimated=price_estimated,
                    latency_ms=rng.choice([rng.uniform(5, 90), rng.uniform(100, 2500), rng.uniform(2000, 70_000)]),
                    error_type="RateLimitError" if failed else "BudgetExceeded" if refused else "",
                    error_message="slow down" if failed else "over budget" if refused else "",
                    user_id=user.pk if user else None,
                    feature=rng.choice(FEATURES),
                    key_fingerprint="abcdef123456",
                    request_id=f"req-{offset}-{n}",
                    created_at=datetime.combine(
                        day, time(rng.randrange(24), rng.randrange(60), rng.randrange(60)), UTC
                    ),
                    prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {n}"}],
                    response_text=f"answer {n}" if answered else None,
                )
            )
    return records


# -- independent expectations ----------------------------------------------------------------------


def money(records) -> Decimal:
    return sum((r.cost or Decimal(0) for r in records), Decimal(0))


def billed(records) -> list[CallRecord]:
    """Calls that spent tokens: a cache hit spent none (its cost is in saved_cost)."""
    return [r for r in records if not r.cached]


def expect(records) -> dict:
    failures = sum(r.status == ERROR for r in records)
    refusals = sum(r.status == REFUSED for r in records)
    hits = sum(r.cached for r in records)
    lookups = sum(r.status == SUCCESS for r in records)
    sent = len(records) - refusals
    return {
        "requests": len(records),
        "failures": failures,
        "refusals": refusals,
        "cache_hits": hits,
        "cost": money(records),
        "saved_cost": sum((r.saved_cost or Decimal(0) for r in records), Decimal(0)),
        "total_tokens": sum(r.usage.total_tokens for r in billed(records)),
        "input_tokens": sum(r.usage.prompt_tokens - r.usage.cached_tokens for r in billed(records)),
        "cached_tokens": sum(r.usage.cached_tokens for r in billed(records)),
        "output_tokens": sum(r.usage.completion_tokens for r in billed(records)),
        "cache_hit_rate": hits / lookups if lookups else None,
        # Refusals were never sent: not errors, and not calls that could have failed.
        "error_rate": failures / sent if sent else None,
    }


def check_totals(totals: dash.Totals, records) -> None:
    e = expect(records)
    assert totals.requests == e["requests"]
    assert totals.failures == e["failures"]
    assert totals.refusals == e["refusals"]
    assert totals.cache_hits == e["cache_hits"]
    assert totals.cost == e["cost"]
    assert totals.saved_cost == e["saved_cost"]
    assert totals.total_tokens == e["total_tokens"]
    assert totals.input_tokens == e["input_tokens"]
    assert totals.cached_tokens == e["cached_tokens"]
    assert totals.completion_tokens == e["output_tokens"]
    assert totals.cache_hit_rate == pytest.approx(e["cache_hit_rate"])
    assert totals.error_rate == pytest.approx(e["error_rate"])


def filters(**dims) -> DashboardFilters:
    return DashboardFilters(start=START, end=TODAY, period="custom", **dims)
