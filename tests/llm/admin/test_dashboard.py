"""The cost dashboard page (apps/llm/admin/dashboard.py): access, figures, charts, links and exports."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from apps.llm.accounting.records import ERROR, REFUSED
from apps.llm.admin.dashboard import export_rows, request_log_url
from apps.llm.admin.formatting import money as shown_money
from apps.llm.dashboard import build_dashboard
from apps.llm.models import Budget, BudgetSpend, LLMRequest
from apps.llm.money import round_significant
from tests.llm.dashboard.seeded import (
    DASHBOARD,
    PREVIOUS_START,
    START,
    TODAY,
    check_totals,
    expect,
    filters,
    money,
)


def test_only_staff_allowed_to_view_usage_see_the_dashboard(client, django_user_model, db):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    member = django_user_model.objects.create_user(email="member@example.com", username="member", password="x")
    client.force_login(member)
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    staff = django_user_model.objects.create_user(
        email="staff@example.com", username="staff", password="x", is_staff=True
    )
    client.force_login(staff)
    assert client.get(DASHBOARD).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_llmusagedaily"))
    staff = django_user_model.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    # Without permission to view the raw log, its tables are not shown (nor exported).
    assert response.context["raw_log"] is False and b'id="llm-expensive"' not in response.content
    assert client.get(DASHBOARD + "?export=expensive").status_code == 400


def test_the_page_shows_the_figures_and_embeds_the_charts(seed, staff_client):
    response = staff_client.get(DASHBOARD, {"period": "7"})
    assert response.status_code == 200
    html = response.content.decode()
    data = response.context["data"]
    current = seed.select(START, TODAY)
    assert data.current.cost == money(current) and data.current.requests == len(current)

    # The chart data: JSON in a json_script element, drawn into canvases by Chart.js from Unfold.
    charts = json.loads(
        re.search(r'<script id="llm-dashboard-charts" type="application/json">(.*?)</script>', html, re.S).group(1)
    )
    assert set(charts) == {"spend", "tokens", "requests", "latency", "features", "users"}
    for name in charts:
        assert f'data-llm-chart="{name}"' in html
    assert "unfold/js/chart/chart.js" in html and "llm/dashboard.js" in html
    spend = charts["spend"]["data"]
    assert spend["labels"] == [(START + timedelta(days=i)).isoformat() for i in range(7)]
    for i, day in enumerate(spend["labels"]):
        day_records = seed.select(date.fromisoformat(day), date.fromisoformat(day))
        assert sum(ds["data"][i] for ds in spend["datasets"]) == pytest.approx(float(money(day_records)))
        assert charts["requests"]["data"]["datasets"][0]["data"][i] == len(day_records)
        assert charts["requests"]["data"]["datasets"][1]["data"][i] == sum(r.status == ERROR for r in day_records)
    assert sum(charts["users"]["data"]["datasets"][0]["data"]) == pytest.approx(float(money(current)))

    # Every headline figure links to the request log, filtered to the same calls.
    figure_links = re.findall(r'<a class="llm-card llm-figure" href="([^"]+)" data-figure="(\w+)"', html)
    assert {key for _, key in figure_links} >= {"spend", "requests", "error_rate", "p95", "budgets"}
    error_link = next(link for link, key in figure_links if key == "error_rate").replace("&amp;", "&")
    assert parse_qs(urlparse(error_link).query) == {
        "created_at_from": [START.isoformat()],
        "created_at_to": [TODAY.isoformat()],
        "status__exact": ["error"],
    }
    # The raw-log rows link to their entries.
    top = data.expensive.rows[0]
    assert reverse("admin:llm_llmrequest_change", args=[top.id]) in html


def test_the_page_filters_by_model_user_and_feature(seed, staff_client):
    user = seed.users[1]
    response = staff_client.get(
        DASHBOARD, {"period": "7", "model": "gpt-4o-mini", "user": user.pk, "feature": "support.reply"}
    )
    data = response.context["data"]
    records = seed.select(START, TODAY, model="gpt-4o-mini", user_id=user.pk, feature="support.reply")
    check_totals(data.current, records)
    # The filter form keeps its values.
    html = response.content.decode()
    assert f'<option value="{user.pk}" selected>' in html and '<option value="gpt-4o-mini" selected>' in html


def test_dashboard_links_open_exactly_those_calls_in_the_request_log(seed, staff_client):
    data = build_dashboard(filters(feature="search"))
    for row in [*data.models[:3], *data.users]:
        response = staff_client.get(request_log_url(row.filters))
        assert response.status_code == 200
        shown = {obj.pk for obj in response.context["cl"].result_list}
        f = row.filters
        expected = {
            r.id
            for r in seed.select(
                START,
                TODAY,
                provider=f.provider,
                model=f.model,
                user_id=f.user_id,
                no_user=f.without_user,
                feature=f.feature,
            )
        }
        assert shown == expected and response.context["cl"].result_count == len(expected)
    errors = staff_client.get(request_log_url(filters(), status__exact="error"))
    assert {o.pk for o in errors.context["cl"].result_list} == {
        r.id for r in seed.select(START, TODAY) if r.status == ERROR
    }


def test_csv_exports_parse_and_match(seed, staff_client):
    def export(section: str) -> list[dict]:
        response = staff_client.get(DASHBOARD, {"period": "7", "export": section})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert f"llm-{section}-{START}-{TODAY}.csv" in response["Content-Disposition"]
        return list(csv.DictReader(io.StringIO(response.content.decode())))

    daily = export("daily")
    assert [row["date"] for row in daily] == [(START + timedelta(days=i)).isoformat() for i in range(7)]
    for row in daily:
        day = date.fromisoformat(row["date"])
        e = expect(seed.select(day, day))
        assert int(row["requests"]) == e["requests"] and int(row["errors"]) == e["failures"]
        assert Decimal(row["spend_usd"]) == e["cost"]
        assert (int(row["input_tokens"]), int(row["cached_tokens"]), int(row["output_tokens"])) == (
            e["input_tokens"],
            e["cached_tokens"],
            e["output_tokens"],
        )
        assert sum(Decimal(v) for k, v in row.items() if k.startswith("spend_usd:")) == e["cost"]

    models = export("models")
    for row in models:
        rs = seed.select(START, TODAY, provider=row["provider"], model=row["model"])
        assert (int(row["requests"]), Decimal(row["spend_usd"])) == (len(rs), money(rs))
    assert sum(int(row["requests"]) for row in models) == len(seed.select(START, TODAY))

    headline = {row["metric"]: row for row in export("headline")}
    assert Decimal(headline["spend"]["value"]) == money(seed.select(START, TODAY))
    assert Decimal(headline["spend"]["previous"]) == money(seed.select(PREVIOUS_START, START - timedelta(days=1)))

    for section in ("users", "features"):
        rows = export(section)
        assert sum(Decimal(r["spend_usd"]) for r in rows) <= money(seed.select(START, TODAY))
    expensive = export("expensive")
    top = max((r for r in seed.select(START, TODAY) if r.cost is not None), key=lambda r: r.cost)
    assert expensive[0]["id"] == str(top.id) and Decimal(expensive[0]["cost_usd"]) == top.cost
    assert all(row["status"] == "error" for row in export("failures"))
    assert staff_client.get(DASHBOARD, {"export": "nonsense"}).status_code == 400


def test_export_rows_match_what_the_page_shows(seed):
    data = build_dashboard(filters())
    rows = export_rows(data, "features")
    assert [r[0] for r in rows[1:]] == [row.filters.feature for row in data.features]


def test_the_dashboard_costs_a_fixed_number_of_queries(seed, staff_client, django_assert_max_num_queries):
    # Ours: 5 over the rollups (per day over both periods; per model; per day of the charted
    # models; users and features of the period: when nothing is filtered, the top users, features
    # and models are the first choices), budgets, and 2 LIMIT 10 queries on the log, each in a
    # savepoint with the statement timeout set and restored; one for user labels; one per tag of the
    # period (its choices and, unfiltered, its top rows); one for the costliest traces (LIMIT 10 on
    # an index). The cost-accuracy panel adds none (its figures come with the per-day and per-model
    # sums). The rest is the admin's own: session, user, sidebar, session save.
    with django_assert_max_num_queries(25) as captured:
        assert staff_client.get(DASHBOARD, {"period": "90"}).status_code == 200
    sqls = [q["sql"] for q in captured.captured_queries]
    ours = [sql for sql in sqls if re.search(r"\bllm_(llmusage\w+|llmrequest|budget)", sql)]
    assert len(ours) == 9, ours
    assert len([sql for sql in sqls if "llm_llmtrace" in sql]) == 1
    # Unfiltered, nothing reads the finest rollup (one row per user x model x feature x day).
    assert not [sql for sql in ours if "llm_llmusagedaily" in sql]
    raw = [sql for sql in ours if re.search(r'(FROM|JOIN) "?llm_llmrequest', sql)]
    assert len(raw) == 2 and all("LIMIT 10" in sql for sql in raw)
    # The costliest calls and the latest failures: ten ids from the per-model rollup's lists, then those rows.
    assert "llm_llmusagebymodel" in raw[0] and "unnest(top_costs, top_ids)" in raw[0]
    assert "llm_llmusagebymodel" in raw[1] and "unnest(failure_times, failure_ids)" in raw[1]
    # No per-day (or per-row) queries: a year costs the same as 90 days.
    with django_assert_max_num_queries(len(sqls)):
        staff_client.get(DASHBOARD, {"period": "custom", "start": str(TODAY - timedelta(days=365)), "end": str(TODAY)})


def test_budget_status_on_the_dashboard(seed, staff_client):
    today = timezone.localdate()
    over = Budget.objects.create(name="all", soft_limit=Decimal("1"), hard_limit=Decimal("2"))
    BudgetSpend.objects.update_or_create(
        budget=over, period_start=today.replace(day=1), defaults={"spent": Decimal("2.5")}
    )
    fine = Budget.objects.create(
        name="search", scope="feature", feature="search", period="day", soft_limit=Decimal("5")
    )
    BudgetSpend.objects.update_or_create(budget=fine, period_start=today, defaults={"spent": Decimal("1")})
    response = staff_client.get(DASHBOARD)
    reached = response.context["budgets_reached"]
    assert [(b["name"], b["status"], b["spent"], b["limit"]) for b in reached] == [("all", "hard", "$2.50", "$2.00")]
    assert "at a limit" in response.content.decode() and "all: $2.50" in response.content.decode()


# -- cost accuracy and refusals --------------------------------------------------------------------


def test_the_accuracy_panel_shows_the_figures_and_links_to_the_drifting_calls(seed, staff_client):
    response = staff_client.get(DASHBOARD, {"period": "7"})
    html = response.content.decode()
    records = seed.select(START, TODAY)
    panel = html[html.index('id="llm-accuracy"') :]
    panel = panel[: panel.index("</section>")]
    accuracy = response.context["data"].accuracy
    # Every pricing category with its count and share; refused and failed link to their calls.
    for p in accuracy.pricing:
        assert re.search(rf'data-pricing="{p.key}">.*?{p.calls:,}.*?{p.share * 100:.1f}%', panel, re.S), p
    refused = re.search(r'data-pricing="refused">.*?href="([^"]+)"', panel, re.S).group(1).replace("&amp;", "&")
    assert {o.pk for o in staff_client.get(refused).context["cl"].result_list} == {
        r.id for r in records if r.status == REFUSED
    }
    # Each model whose provider reports its cost links to its calls whose two costs differ.
    links = re.findall(r'<tr><td><a href="([^"]+)" title="The calls whose costs differ', panel)
    assert len(links) == len(accuracy.drifts) > 0
    for link, drift in zip(links, accuracy.drifts, strict=True):
        listed = staff_client.get(link.replace("&amp;", "&")).context["cl"].result_list
        assert {o.pk for o in listed} == {
            r.id
            for r in records
            if (r.provider, r.model) == (drift.filters.provider, drift.filters.model)
            and r.cost is not None
            and r.provider_cost is not None
            and r.cost != r.provider_cost
        }
        assert shown_money(drift.ours) in panel and shown_money(drift.amount, signed=True) in panel
    # The headline: refusals beside errors, and not in the error rate.
    figures = {f["key"]: f for f in response.context["figures"]}
    assert figures["refused"]["value"] == str(sum(r.status == REFUSED for r in records))
    assert "status__exact=refused" in figures["refused"]["link"]


def test_the_accuracy_csv(seed, staff_client):
    response = staff_client.get(DASHBOARD, {"period": "7", "export": "accuracy"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    records = seed.select(START, TODAY)
    pricing = {r["name"]: r for r in rows if r["section"] == "pricing"}
    assert sum(int(r["calls"]) for r in pricing.values()) == len(records)
    assert int(pricing["refused"]["calls"]) == sum(r.status == REFUSED for r in records)
    assert Decimal(pricing["failed"]["share"]) == round_significant(
        Decimal(sum(r.status == ERROR for r in records)) / len(records)
    )
    drifts = {(r["provider"], r["model"]): r for r in rows if r["section"] == "drift" and r["name"] != "total"}
    both = [r for r in records if r.cost is not None and r.provider_cost is not None]
    assert set(drifts) == {(r.provider, r.model) for r in both}
    for (provider, model), row in drifts.items():
        mine = [r for r in both if (r.provider, r.model) == (provider, model)]
        ours = sum((r.cost for r in mine), Decimal(0))
        theirs = sum((r.provider_cost for r in mine), Decimal(0))
        # Exact amounts, to the last digit.
        assert (int(row["calls"]), Decimal(row["our_cost_usd"]), Decimal(row["provider_cost_usd"])) == (
            len(mine),
            ours,
            theirs,
        )
        assert Decimal(row["drift_usd"]) == ours - theirs
    total = next(r for r in rows if r["name"] == "total")
    assert Decimal(total["drift_usd"]) == sum((r.cost - r.provider_cost for r in both), Decimal(0))


def test_the_accuracy_panel_on_the_demo_data(db, staff_client):
    call_command("llm_demo", "--calls", "120", "--days", "5", "--seed", "4", "--no-documents", stdout=StringIO())
    response = staff_client.get(DASHBOARD, {"period": "7"})
    assert response.status_code == 200
    accuracy = response.context["data"].accuracy
    rows = LLMRequest.objects.all()
    assert accuracy.requests == rows.count() == sum(p.calls for p in accuracy.pricing)
    assert accuracy.count("failed") == rows.filter(status="error").count() > 0
    # The simulator reports OpenRouter's usage.cost from the catalog: ours against theirs per model.
    reported = rows.filter(cost__isnull=False, provider_cost__isnull=False)
    assert accuracy.total.calls == reported.count() > 0
    assert accuracy.total.ours == reported.aggregate(s=Sum("cost"))["s"]
    assert accuracy.total.theirs == reported.aggregate(s=Sum("provider_cost"))["s"]
    assert {d.filters.model for d in accuracy.drifts} == set(reported.values_list("model", flat=True))
    html = response.content.decode()
    assert 'id="llm-accuracy"' in html and "Cost accuracy" in html and "Priced exactly" in html
    for drift in accuracy.drifts:
        assert drift.label in html
    assert "drift=1" in html
