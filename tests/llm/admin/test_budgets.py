"""The budgets admin (apps/llm/admin/budgets.py): use against the limits of the current period."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from apps.llm.models import Budget, BudgetSpend


def test_budget_list_shows_use_against_limits(db, staff_client, django_user_model):
    today = timezone.localdate()
    user = django_user_model.objects.create_user(email="spender@example.com", username="spender", password="x")
    monthly = Budget.objects.create(name="company", soft_limit=Decimal("50"), hard_limit=Decimal("100"))
    # Saving a budget counts its period's spend so far (none here); the test sets it.
    BudgetSpend.objects.update_or_create(
        budget=monthly, period_start=today.replace(day=1), defaults={"spent": Decimal("60"), "reserved": Decimal("1.5")}
    )
    # Last month's spend is not this period's.
    BudgetSpend.objects.create(
        budget=monthly, period_start=(today.replace(day=1) - timedelta(days=1)).replace(day=1), spent=Decimal("99")
    )
    daily = Budget.objects.create(name="alice daily", scope="user", user=user, period="day", hard_limit=Decimal("2"))
    BudgetSpend.objects.update_or_create(budget=daily, period_start=today, defaults={"spent": Decimal("2")})
    Budget.objects.create(name="search", scope="feature", feature="search", soft_limit=Decimal("10"))

    response = staff_client.get("/admin/llm/budget/")
    assert response.status_code == 200
    rows = {b.name: b for b in response.context["cl"].result_list}
    assert rows["company"].current_spent == Decimal("60") and rows["company"].current_reserved == Decimal("1.5")
    assert rows["alice daily"].current_spent == Decimal("2") and rows["search"].current_spent == 0
    html = response.content.decode()
    assert "$60.00" in html and "120% of $50.00" in html and "60% of $100.00" in html
    assert "soft limit reached" in html and "hard limit reached" in html and "spender@example.com" in html

    assert staff_client.get("/admin/llm/budget/add/").status_code == 200
    assert staff_client.get(f"/admin/llm/budget/{monthly.pk}/change/").status_code == 200
    response = staff_client.post(
        "/admin/llm/budget/add/",
        {
            "name": "bad",
            "scope": "global",
            "period": "month",
            "soft_limit": "10",
            "hard_limit": "5",
            "is_active": "on",
            "spends-TOTAL_FORMS": "0",
            "spends-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and not Budget.objects.filter(name="bad").exists()  # soft above hard
