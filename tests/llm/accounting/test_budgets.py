"""Budgets: refused before sending at the hard limit, warned at the soft one, exact under concurrency."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from apps.llm import errors
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.client import LLMClient
from apps.llm.models import Budget, BudgetSpend, LLMRequest
from apps.llm.testing.simulator import CHAT
from tests.helpers import wait_for


@pytest.fixture
def client(make_client, sim) -> LLMClient:
    """A client of the simulator whose calls are logged (budgets count what the log records)."""
    client = make_client(sim, key="sk-test-budget-000000", recorders=[SyncDatabaseRecorder()])
    client.budgets.refresh_seconds = 0  # see budget edits at once
    return client


def ask(client, n: int, **kwargs):
    return client.chat_completion(
        [{"role": "user", "content": f"question {n}"}], "gpt-4o-mini", max_tokens=50, **kwargs
    )


@pytest.mark.django_db
def test_hard_limit_refuses_before_sending(sim, client):
    one_call = client.estimate_cost("gpt-4o-mini", 20, 50)
    Budget.objects.create(name="daily", period="day", hard_limit=one_call * Decimal("2.5"))
    ask(client, 1)
    ask(client, 2)
    with pytest.raises(errors.BudgetExceeded) as excinfo:
        for n in range(3, 10):
            sent = sim.count(CHAT)
            ask(client, n)
    assert sim.count(CHAT) == sent  # the refused call was never sent
    refused = LLMRequest.objects.filter(error_type="BudgetExceeded")
    assert refused.count() == 1 and refused.get().attempts == 0
    assert "would be exceeded" in str(excinfo.value) and excinfo.value.budget == "daily"
    spend = BudgetSpend.objects.get()
    assert spend.reserved == 0
    assert spend.spent == LLMRequest.objects.filter(status="success").aggregate(s=Sum("cost"))["s"]
    assert spend.spent <= Budget.objects.get().hard_limit
    # A cache hit costs nothing and is never refused.
    assert ask(client, 1).cached


@pytest.mark.django_db
def test_refused_call_never_reaches_the_provider(sim, client):
    Budget.objects.create(name="zero", period="month", hard_limit=Decimal("0"))
    with pytest.raises(errors.BudgetExceeded):
        ask(client, 1)
    assert sim.count(CHAT) == 0


@pytest.mark.django_db
def test_scopes(sim, admin_user, django_user_model, client):
    other = django_user_model.objects.create_user(email="other@example.com", password="x", username="other")
    Budget.objects.create(name="admin", scope="user", user=admin_user, period="day", hard_limit=Decimal(0))
    Budget.objects.create(name="search", scope="feature", feature="search", period="day", hard_limit=Decimal(0))
    with pytest.raises(errors.BudgetExceeded, match="'admin'"):
        ask(client, 1, user=admin_user)
    with pytest.raises(errors.BudgetExceeded, match="'search'"):
        ask(client, 2, user=other, feature="search")
    assert ask(client, 3, user=other, feature="chat").cost > 0
    assert sim.count(CHAT) == 1


@pytest.mark.django_db
def test_soft_limit_warns_once(sim, caplog, client):
    budget = Budget.objects.create(name="soft", period="month", soft_limit=Decimal("0.0000001"))
    with caplog.at_level(logging.WARNING, logger="apps.llm.accounting.budgets"):
        ask(client, 1)
        ask(client, 2)
    assert caplog.text.count("Budget 'soft' passed its soft limit") == 1
    assert BudgetSpend.objects.get(budget=budget).soft_warned_at is not None


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_never_admit_past_the_hard_limit(sim, price_table, client):
    sim.latency = 0.02
    estimate = client.estimate_cost("gpt-4o-mini", 20, 50)
    budget = Budget.objects.create(name="tight", period="day", hard_limit=estimate * 6)
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(5):
            try:
                ask(client, t * 100 + i)
                result = "ok"
            except errors.BudgetExceeded:
                result = "refused"
            with lock:
                outcomes.append(result)
        connection.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spend = BudgetSpend.objects.get(budget=budget)
    successes = LLMRequest.objects.filter(status="success")
    assert len(outcomes) == 40 and outcomes.count("ok") == successes.count() == sim.count(CHAT)
    assert outcomes.count("refused") == LLMRequest.objects.filter(error_type="BudgetExceeded").count() > 0
    assert spend.reserved == 0
    assert spend.spent == successes.aggregate(s=Sum("cost"))["s"] <= budget.hard_limit


@pytest.mark.django_db(transaction=True)
def test_budgets_are_refreshed_off_the_callers_path():
    from django.test.utils import CaptureQueriesContext

    from apps.llm.accounting.budgets import BudgetGuard

    guard = BudgetGuard(refresh_seconds=0.05)
    Budget.objects.create(name="first", period="day", hard_limit=Decimal("1"))
    assert [b.name for b in guard.budgets()] == ["first"]  # the first read is the caller's own
    Budget.objects.create(name="second", period="day", hard_limit=Decimal("1"))
    wait_for(lambda: guard._loaded_at + 0.05 < time.monotonic(), timeout=5, what="the budgets to be due")
    with CaptureQueriesContext(connection) as queries:
        seen = guard.budgets()
        wait_for(lambda: len(guard.budgets()) == 2, timeout=10, what="the background refresh")
    assert [b.name for b in seen] in (["first"], ["first", "second"])
    assert len(queries) == 0  # read by the background thread, on its own connection
    guard.refresh_seconds = 60
    wait_for(lambda: not guard._refreshing.locked(), timeout=10, what="the refresh to end")
    guard.invalidate()
    Budget.objects.filter(name="first").update(is_active=False)
    with CaptureQueriesContext(connection) as queries:
        assert [b.name for b in guard.budgets()] == ["second"]  # invalidated: read at once, here
    assert len(queries) == 1
