"""Budgets whatever happens: created mid-period, unpriced models, refusals, the database away."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from apps.llm import errors
from apps.llm.accounting.request_log import DatabaseRecorder, SyncDatabaseRecorder
from apps.llm.accounting.usage import usage_stats
from apps.llm.dashboard import budget_usage
from apps.llm.models import Budget, BudgetSpend, LLMRequest
from apps.llm.testing.simulator import CHAT
from tests.helpers import database_unreachable

KEY = "sk-test-policies-000000"
#: Not in the price table: its calls have no price of their own.
UNPRICED = "gpt-unreleased-9"


@pytest.fixture
def client(make_client, sim):
    client = make_client(sim, key=KEY, recorders=[SyncDatabaseRecorder()])
    client.budgets.refresh_seconds = 0  # see budget edits at once
    return client


def ask(client, n: int, model: str = "gpt-4o-mini", **kwargs):
    return client.chat_completion([{"role": "user", "content": f"question {n}"}], model, max_tokens=50, **kwargs)


def logged_cost(**filters) -> Decimal:
    return LLMRequest.objects.filter(**filters).aggregate(s=Sum("cost"))["s"] or Decimal(0)


@pytest.mark.django_db
def test_a_budget_created_mid_period_starts_from_the_spend_so_far(client):
    for n in range(3):
        ask(client, n)
    ask(client, 3, feature="support.reply")
    spent = logged_cost()
    assert spent > 0

    everything = Budget.objects.create(name="all", period=Budget.Period.MONTH, hard_limit=Decimal("1"))
    support = Budget.objects.create(
        name="support", scope=Budget.Scope.FEATURE, feature="support.reply", hard_limit=Decimal("1")
    )
    assert BudgetSpend.objects.get(budget=everything).spent == spent
    assert BudgetSpend.objects.get(budget=support).spent == logged_cost(feature="support.reply")
    shown = {u.name: u.spent for u in budget_usage()}
    assert shown == {"all": spent, "support": logged_cost(feature="support.reply")}

    # Edited (re-scoped) later: counted again for the new scope.
    support.feature = "nothing.yet"
    support.save()
    assert BudgetSpend.objects.get(budget=support).spent == 0


@pytest.mark.django_db
def test_unpriced_under_refuse_is_refused_before_sending(client, sim, settings):
    settings.LLM = {**settings.LLM, "UNPRICED": "refuse"}
    Budget.objects.create(name="tight", period=Budget.Period.DAY, hard_limit=Decimal("0.05"))
    with pytest.raises(errors.UnpricedModel, match="no price"):
        ask(client, 1, model=UNPRICED)
    assert sim.count(CHAT) == 0
    row = LLMRequest.objects.get()
    assert (row.status, row.cost, row.error_type) == ("refused", 0, "UnpricedModel")
    stats = usage_stats(days=1)
    assert (stats.total_requests, stats.errors, stats.refused) == (1, 0, 1)


@pytest.mark.django_db
def test_unpriced_under_estimate_is_charged_a_conservative_price_and_the_limit_holds(client, sim, settings):
    settings.LLM = {**settings.LLM, "UNPRICED": "estimate"}
    limit = Decimal("0.02")
    budget = Budget.objects.create(name="tight", period=Budget.Period.DAY, hard_limit=limit)
    with pytest.raises(errors.BudgetExceeded):
        for n in range(200):
            ask(client, n, model=UNPRICED)
    answered = LLMRequest.objects.filter(status="success")
    assert answered.exists() and all(r.price_estimated and r.cost > 0 for r in answered)
    spend = BudgetSpend.objects.get(budget=budget)
    assert spend.reserved == 0 and spend.spent == logged_cost(status="success") <= limit
    refused = LLMRequest.objects.get(status="refused")
    assert refused.error_type == "BudgetExceeded" and refused.cost == 0
    stats = usage_stats(days=1)
    assert stats.errors == 0 and stats.refused == 1


@pytest.mark.django_db
def test_unpriced_without_a_hard_limit_stays_unknown(client):
    response = ask(client, 1, model=UNPRICED)
    assert response.cost is None and not response.price_estimated


# -- the database away ----------------------------------------------------------------------------------


@pytest.fixture
def spooled(make_client, sim, tmp_path, price_table):
    """A client whose request log survives the outage (spooled, written when the database is back)."""
    recorder = DatabaseRecorder(tmp_path / "spool", retry_interval=0.1)
    client = make_client(sim, key=KEY, recorders=[recorder])
    client.budgets.refresh_seconds = 0
    yield client, recorder
    recorder.close()


@pytest.mark.django_db(transaction=True)
def test_allow_admits_calls_while_the_database_is_down_and_loses_nothing(spooled):
    client, recorder = spooled
    budget = Budget.objects.create(name="all", period=Budget.Period.MONTH, hard_limit=Decimal("5"))
    ask(client, 0)  # prices and budgets read once
    assert recorder.flush(30)
    with database_unreachable():
        during = [ask(client, n) for n in range(1, 4)]
    assert all(r.content and r.cost > 0 for r in during)
    ask(client, 4)  # the database answers again: the outage's spend is applied
    assert recorder.flush(30)
    assert LLMRequest.objects.count() == 5
    spend = BudgetSpend.objects.get(budget=budget)
    assert spend.reserved == 0 and spend.spent == logged_cost()


@pytest.mark.django_db(transaction=True)
def test_allow_without_budgets_never_shows_a_database_error(spooled):
    client, recorder = spooled
    ask(client, 0)
    with database_unreachable():
        assert ask(client, 1).content
    assert recorder.flush(30) and LLMRequest.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_deny_refuses_calls_while_the_database_is_down(spooled, sim, settings):
    settings.LLM = {**settings.LLM, "BUDGETS_WHEN_DB_DOWN": "deny"}
    client, recorder = spooled
    Budget.objects.create(name="all", period=Budget.Period.MONTH, hard_limit=Decimal("5"))
    ask(client, 0)
    sent = sim.count(CHAT)
    with database_unreachable(), pytest.raises(errors.AccountingUnavailable, match="unreachable"):
        ask(client, 1)
    assert sim.count(CHAT) == sent
    assert recorder.flush(30)
    assert LLMRequest.objects.get(status="refused").error_type == "AccountingUnavailable"
