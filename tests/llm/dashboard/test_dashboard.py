"""The cost dashboard and the usage admin pages, on real PostgreSQL.

Calls are written with ``write_records`` (rows and rollups exactly as in production); every
figure is checked against plain Python sums over the ``CallRecord`` objects themselves.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.llm import dashboard as dash
from apps.llm.dashboard import calls
from apps.llm.admin.base import EstimatedCountPaginator
from apps.llm.dashboard import DashboardFilters, build_dashboard, percentile
from apps.llm.models import LATENCY_BUCKETS_MS, Budget, BudgetSpend, LLMRequest, latency_bucket
from apps.llm.accounting.records import ERROR, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.types import Usage
from apps.llm.admin.dashboard import export_rows, request_log_url

DASHBOARD = "/admin/llm/llmusagedaily/dashboard/"
LOG = "/admin/llm/llmrequest/"
TODAY = dash.rollup_today()
# A 7-day period ending today, and the 7 days before it (the comparison period).
START = TODAY - timedelta(days=6)
PREVIOUS_START = START - timedelta(days=7)

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("openrouter", "anthropic/claude-3.5-sonnet"),
          ("openrouter", "google/gemini-2.0-flash"), ("openrouter", "meta-llama/llama-3.3-70b"),
          ("openai", "o3-mini"), ("openrouter", "mistralai/mistral-large"), ("openai", "text-embedding-3-small")]
FEATURES = ["support.reply", "search", "", "summary"]
SECRET = "sk-proj-" + "Q1w2E3r4" * 5


# -- data ------------------------------------------------------------------------------------------


@dataclass
class Seed:
    records: list[CallRecord]
    users: list  # two users; calls also go to no user

    def select(self, start: date, end: date, *, provider: str = "", model: str = "", user_id: int | None = None,
               no_user: bool = False, feature: str | None = None) -> list[CallRecord]:
        return [r for r in self.records
                if start <= r.created_at.date() <= end
                and (not provider or r.provider == provider) and (not model or r.model == model)
                and (user_id is None or r.user_id == user_id) and (not no_user or r.user_id is None)
                and (feature is None or r.feature == feature)]


def make_records(users, rng: random.Random, days: int = 14, per_day: int = 14) -> list[CallRecord]:
    records = []
    for offset in range(days):
        day = TODAY - timedelta(days=offset)
        for n in range(per_day + offset % 3):
            provider, model = MODELS[rng.randrange(len(MODELS))] if n % 5 else MODELS[0]
            user = rng.choice([*users, None])
            failed = rng.random() < 0.12
            cached = not failed and rng.random() < 0.2
            prompt, cached_tokens, completion = rng.randint(10, 4000), 0, rng.randint(0, 800)
            if rng.random() < 0.4:
                cached_tokens = rng.randint(0, prompt)
            cost = None if failed else Decimal(rng.randint(1, 9_000_000)) / Decimal(10**9)
            if not failed and not cached and rng.random() < 0.05:
                cost = None  # unknown price: counted, never a silent 0
            records.append(CallRecord(
                endpoint="chat", provider=provider, requested_model=model, model=model,
                status=ERROR if failed else SUCCESS,
                usage=Usage() if failed else Usage(prompt_tokens=prompt, cached_tokens=cached_tokens,
                                                   completion_tokens=completion, total_tokens=prompt + completion),
                cost=Decimal(0) if cached else cost, saved_cost=cost if cached else None, cached=cached,
                latency_ms=rng.choice([rng.uniform(5, 90), rng.uniform(100, 2500), rng.uniform(2000, 70_000)]),
                error_type="RateLimitError" if failed else "", error_message="slow down" if failed else "",
                user_id=user.pk if user else None, feature=rng.choice(FEATURES), key_fingerprint="abcdef123456",
                request_id=f"req-{offset}-{n}",
                created_at=datetime.combine(day, time(rng.randrange(24), rng.randrange(60), rng.randrange(60)), UTC),
                prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {n}"}],
                response_text=None if failed else f"answer {n}",
            ))
    return records


@pytest.fixture
def seed(db, django_user_model) -> Seed:
    users = [django_user_model.objects.create_user(email=f"user{i}@example.com", username=f"user{i}", password="x")
             for i in (1, 2)]
    records = make_records(users, random.Random(20240607))
    assert write_records(records, store_text=True) == len(records)
    return Seed(records=records, users=users)


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


# -- independent expectations ----------------------------------------------------------------------


def money(records) -> Decimal:
    return sum((r.cost or Decimal(0) for r in records), Decimal(0))


def billed(records) -> list[CallRecord]:
    """Calls that spent tokens: a cache hit spent none (its cost is in saved_cost)."""
    return [r for r in records if not r.cached]


def expect(records) -> dict:
    failures = sum(r.status == ERROR for r in records)
    hits = sum(r.cached for r in records)
    lookups = sum(r.status == SUCCESS for r in records)
    return {
        "requests": len(records), "failures": failures, "cache_hits": hits, "cost": money(records),
        "saved_cost": sum((r.saved_cost or Decimal(0) for r in records), Decimal(0)),
        "total_tokens": sum(r.usage.total_tokens for r in billed(records)),
        "input_tokens": sum(r.usage.prompt_tokens - r.usage.cached_tokens for r in billed(records)),
        "cached_tokens": sum(r.usage.cached_tokens for r in billed(records)),
        "output_tokens": sum(r.usage.completion_tokens for r in billed(records)),
        "cache_hit_rate": hits / lookups if lookups else None,
        "error_rate": failures / len(records) if records else None,
    }


def check_totals(totals: dash.Totals, records) -> None:
    e = expect(records)
    assert totals.requests == e["requests"]
    assert totals.failures == e["failures"]
    assert totals.cache_hits == e["cache_hits"]
    assert totals.cost == e["cost"]
    assert totals.saved_cost == e["saved_cost"]
    assert totals.total_tokens == e["total_tokens"]
    assert totals.input_tokens == e["input_tokens"]
    assert totals.cached_tokens == e["cached_tokens"]
    assert totals.completion_tokens == e["output_tokens"]
    assert totals.cache_hit_rate == pytest.approx(e["cache_hit_rate"])
    assert totals.error_rate == pytest.approx(e["error_rate"])


def bucket_bounds(latency: float) -> tuple[float, float]:
    index = latency_bucket(latency)
    lower = LATENCY_BUCKETS_MS[index - 1] if index else 0
    upper = LATENCY_BUCKETS_MS[index] if index < len(LATENCY_BUCKETS_MS) else float("inf")
    return lower, upper


def exact_percentile(latencies: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(latencies)
    rank = max(1, -(-q * len(ordered) // 1))  # ceil
    return ordered[int(rank) - 1]


def assert_same_bucket(estimate: float | None, latencies: list[float], q: float) -> None:
    if not latencies:
        assert estimate is None
        return
    lower, upper = bucket_bounds(exact_percentile(latencies, q))
    assert lower <= estimate <= upper, (estimate, lower, upper)


def filters(**dims) -> DashboardFilters:
    return DashboardFilters(start=START, end=TODAY, period="custom", **dims)


# -- the figures (apps/llm/dashboard.py) ---------------------------------------------------------------


def test_unfiltered_figures_match_the_records(seed):
    data = build_dashboard(filters())
    current = seed.select(START, TODAY)
    previous = seed.select(PREVIOUS_START, START - timedelta(days=1))
    assert current and previous
    check_totals(data.current, current)
    check_totals(data.previous, previous)

    figures = {f.key: f for f in data.figures}
    assert figures["spend"].value == money(current) and figures["spend"].previous == money(previous)
    assert figures["spend"].change == pytest.approx(float((money(current) - money(previous)) / money(previous)))
    assert figures["requests"].change == pytest.approx((len(current) - len(previous)) / len(previous))
    e, p = expect(current), expect(previous)
    assert figures["error_rate"].change == pytest.approx(e["error_rate"] - p["error_rate"])  # in points
    assert figures["cache_hit_rate"].value == pytest.approx(e["cache_hit_rate"])
    assert figures["saved"].value == e["saved_cost"]
    assert figures["tokens"].value == e["total_tokens"]

    # Daily series: every day of the period, days in order, sums per day.
    assert data.daily.days == [START + timedelta(days=i) for i in range(7)]
    for i, day in enumerate(data.daily.days):
        e = expect(seed.select(day, day))
        assert data.daily.requests[i] == e["requests"]
        assert data.daily.failures[i] == e["failures"]
        assert data.daily.cost[i] == e["cost"]
        assert (data.daily.input_tokens[i], data.daily.cached_tokens[i], data.daily.output_tokens[i]) == (
            e["input_tokens"], e["cached_tokens"], e["output_tokens"])
    # The stacked spend chart: top models plus "Other" add up to each day's spend.
    assert len(data.daily.cost_by_model) == dash.CHART_MODELS + 1 and data.daily.cost_by_model[-1][0] == dash.OTHER
    for i in range(7):
        assert sum(values[i] for _, _, values in data.daily.cost_by_model) == data.daily.cost[i]

    # Models, by spend.
    by_model = {}
    for r in current:
        by_model.setdefault((r.provider, r.model), []).append(r)
    expected = sorted(((money(rs), len(rs), key) for key, rs in by_model.items()), key=lambda t: (-t[0], -t[1], t[2]))
    assert [(r.filters.provider, r.filters.model) for r in data.models] == [key for _, _, key in expected]
    for row in data.models:
        rs = by_model[(row.filters.provider, row.filters.model)]
        assert (row.requests, row.cost, row.tokens) == (len(rs), money(rs), expect(rs)["total_tokens"])
        assert row.avg_cost == money(rs) / len(rs)

    # Users (and calls without one) and features.
    for row in data.users:
        rs = seed.select(START, TODAY, user_id=row.filters.user_id, no_user=row.filters.without_user)
        assert (row.requests, row.cost) == (len(rs), money(rs))
    assert {r.label for r in data.users} == {"user1@example.com", "user2@example.com", "(no user)"}
    for row in data.features:
        rs = seed.select(START, TODAY, feature=row.filters.feature)
        assert (row.requests, row.cost, row.tokens) == (len(rs), money(rs), expect(rs)["total_tokens"])
    assert sum(r.cost for r in data.features) == money(current)

    # The filter choices are what the period contains.
    assert set(data.options.models) == {(r.provider, r.model) for r in current}
    assert set(data.options.features) == {r.feature for r in current}


@pytest.mark.parametrize("dims", [
    {"model": "gpt-4o-mini"},
    {"provider": "openrouter"},
    {"user": 0},
    {"user": "none"},
    {"feature": "support.reply"},
    {"feature": ""},
    {"provider": "openai", "feature": "search", "user": 1},
])
def test_filters_change_the_figures(seed, dims):
    select, narrowed = {}, {}
    for name, value in dims.items():
        if name == "user" and value == "none":
            select["no_user"], narrowed["without_user"] = True, True
        elif name == "user":
            select["user_id"] = narrowed["user_id"] = seed.users[value].pk
        else:
            select[name] = narrowed[name] = value
    data = build_dashboard(filters(**narrowed))
    current = seed.select(START, TODAY, **select)
    previous = seed.select(PREVIOUS_START, START - timedelta(days=1), **select)
    assert current
    check_totals(data.current, current)
    check_totals(data.previous, previous)
    for i, day in enumerate(data.daily.days):
        assert data.daily.cost[i] == money(seed.select(day, day, **select))
    assert sum(r.requests for r in data.models) == len(current)
    expensive = sorted((r for r in current if r.cost is not None), key=lambda r: r.cost, reverse=True)[:10]
    assert [c.cost for c in data.expensive.rows] == [r.cost for r in expensive]
    assert all(c.id in {r.id for r in current} for c in data.expensive.rows)


def test_querystring_filters_and_periods():
    f = DashboardFilters.from_query({"period": "7", "model": "gpt-4o", "user": "12", "feature": "-"}, today=TODAY)
    assert (f.start, f.end, f.model, f.user_id, f.feature) == (START, TODAY, "gpt-4o", 12, "")
    assert f.previous().start == PREVIOUS_START and f.previous().end == START - timedelta(days=1)
    assert DashboardFilters.from_query({"period": "today"}, today=TODAY).days == 1
    assert DashboardFilters.from_query({"period": "90"}, today=TODAY).days == 90
    assert DashboardFilters.from_query({"period": "90"}, today=TODAY) == DashboardFilters.for_period("90", today=TODAY)
    custom = DashboardFilters.from_query({"period": "custom", "start": "2025-03-10", "end": "2025-03-01"}, today=TODAY)
    assert (custom.start, custom.end, custom.days) == (date(2025, 3, 1), date(2025, 3, 10), 10)
    assert DashboardFilters.from_query({"period": "nonsense", "user": "x"}, today=TODAY) == DashboardFilters.for_period(
        "30d", today=TODAY)
    assert DashboardFilters.from_query(f.query_params(), today=TODAY) == f
    huge = DashboardFilters.from_query({"period": "custom", "start": "0200-01-01", "end": "2025-01-01"}, today=TODAY)
    assert huge.days == dash.MAX_DAYS


# -- latency percentiles --------------------------------------------------------------------------


def test_percentile_interpolates_within_the_bucket():
    histogram = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    histogram[2] = 10  # ten calls in (100, 200] ms
    assert percentile(histogram, 0.5) == pytest.approx(150)
    assert percentile(histogram, 0.95) == pytest.approx(195)
    histogram[-1] = 90  # ninety slower than the last bound: only its lower bound is known
    assert percentile(histogram, 0.95) == LATENCY_BUCKETS_MS[-1]
    assert percentile([0] * 18, 0.5) is None


def test_latency_percentiles_are_within_the_bucket_resolution(seed):
    data = build_dashboard(filters())
    latencies = [r.latency_ms for r in seed.select(START, TODAY)]
    assert_same_bucket(data.current.p50_ms, latencies, 0.5)
    assert_same_bucket(data.current.p95_ms, latencies, 0.95)
    assert_same_bucket(data.previous.p95_ms, [r.latency_ms for r in seed.select(PREVIOUS_START, START - timedelta(1))],
                       0.95)
    for i, day in enumerate(data.daily.days):
        day_latencies = [r.latency_ms for r in seed.select(day, day)]
        assert_same_bucket(data.daily.p50_ms[i], day_latencies, 0.5)
        assert_same_bucket(data.daily.p95_ms[i], day_latencies, 0.95)


# -- the raw-log tables ---------------------------------------------------------------------------------


@pytest.mark.parametrize("range_scan_max, probe_rows", [
    (10**9, calls.PROBE_ROWS),  # few matches: read them all, sort
    (0, calls.PROBE_ROWS),  # many: the costliest calls of the log hold the answer
    (0, 3),  # many, but not among the costliest: the probe comes up short, then read them all
])
@pytest.mark.parametrize("dims", [
    {}, {"model": "gpt-4o-mini"}, {"feature": ""},  # from the coarse rollups' lists
    {"model": "gpt-4o-mini", "user_id": "first user"},  # crossed: from the log, by the plans above
])
def test_most_expensive_and_recent_failures(seed, monkeypatch, range_scan_max, probe_rows, dims):
    monkeypatch.setattr(calls, "RANGE_SCAN_MAX", range_scan_max)
    monkeypatch.setattr(calls, "PROBE_ROWS", probe_rows)
    dims = {k: seed.users[0].pk if v == "first user" else v for k, v in dims.items()}
    assert_request_tables(seed, build_dashboard(filters(**dims)), seed.select(START, TODAY, **dims))


def assert_request_tables(seed, data, current: list) -> None:
    """The dashboard's costliest calls and latest failures are those of ``current`` (ties by id)."""
    expensive = sorted(sorted((r for r in current if r.cost is not None), key=lambda r: r.id),
                       key=lambda r: r.cost, reverse=True)[:10]
    assert expensive and [c.id for c in data.expensive.rows] == [r.id for r in expensive]
    assert [c.cost for c in data.expensive.rows] == [r.cost for r in expensive]
    failures = sorted((r for r in current if r.status == ERROR), key=lambda r: r.created_at, reverse=True)[:10]
    assert failures and [c.id for c in data.failures.rows] == [r.id for r in failures]
    assert all(c.error_type == "RateLimitError" for c in data.failures.rows)
    assert not data.expensive.timed_out and not data.failures.timed_out


def test_calls_deleted_from_the_log_since_are_replaced_by_the_next_ones(seed):
    # The retention job deletes old rows and leaves the rollups: their lists then name calls
    # that are gone, and the tables must show the next ones from the log instead.
    first = build_dashboard(filters())
    gone = [first.expensive.rows[0].id, first.failures.rows[0].id]
    LLMRequest.objects.filter(pk__in=gone).delete()
    remaining = [r for r in seed.select(START, TODAY) if r.id not in gone]
    assert_request_tables(seed, build_dashboard(filters()), remaining)


def test_raw_tables_are_skipped_when_the_rollups_say_nothing_matches(seed, django_assert_num_queries):
    nothing = filters(model="no-such-model")
    with django_assert_num_queries(0):
        assert dash.most_expensive_calls(nothing, matching=0).rows == []
        assert dash.recent_failures(nothing, matching=0).rows == []


def test_a_slow_raw_query_is_cut_short(seed, monkeypatch):
    monkeypatch.setattr(calls, "RAW_LOG_TIMEOUT_MS", 1)
    slow = LLMRequest.objects.extra(where=["pg_sleep(0.05) IS NOT NULL"])  # noqa: S610 (a test's own SQL)
    table = calls._raw_table(lambda: slow.order_by("-created_at").values(*calls.SUMMARY_COLUMNS)[:10])
    assert table.timed_out and table.rows == []
    # The timeout ended with the block: later queries run normally.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01), current_setting('statement_timeout')")
        assert cursor.fetchone()[1] == "0"


# -- the page -------------------------------------------------------------------------------------------


def test_only_staff_allowed_to_view_usage_see_the_dashboard(client, django_user_model, db):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    member = django_user_model.objects.create_user(email="member@example.com", username="member", password="x")
    client.force_login(member)
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

    staff = django_user_model.objects.create_user(email="staff@example.com", username="staff", password="x",
                                                  is_staff=True)
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
    charts = json.loads(re.search(r'<script id="llm-dashboard-charts" type="application/json">(.*?)</script>',
                                  html, re.S).group(1))
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
        "created_at_from": [START.isoformat()], "created_at_to": [TODAY.isoformat()], "status__exact": ["error"]}
    # The raw-log rows link to their entries.
    top = data.expensive.rows[0]
    assert reverse("admin:llm_llmrequest_change", args=[top.id]) in html


def test_the_page_filters_by_model_user_and_feature(seed, staff_client):
    user = seed.users[1]
    response = staff_client.get(DASHBOARD, {"period": "7", "model": "gpt-4o-mini", "user": user.pk,
                                            "feature": "support.reply"})
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
        expected = {r.id for r in seed.select(START, TODAY, provider=f.provider, model=f.model, user_id=f.user_id,
                                              no_user=f.without_user, feature=f.feature)}
        assert shown == expected and response.context["cl"].result_count == len(expected)
    errors = staff_client.get(request_log_url(filters(), status__exact="error"))
    assert {o.pk for o in errors.context["cl"].result_list} == {
        r.id for r in seed.select(START, TODAY) if r.status == ERROR}


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
            e["input_tokens"], e["cached_tokens"], e["output_tokens"])
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
    # savepoint with the statement timeout set and restored; one for user labels. The rest is the
    # admin's own: session, user, sidebar, session save.
    with django_assert_max_num_queries(24) as captured:
        assert staff_client.get(DASHBOARD, {"period": "90"}).status_code == 200
    sqls = [q["sql"] for q in captured.captured_queries]
    ours = [sql for sql in sqls if re.search(r"\bllm_(llmusage\w+|llmrequest|budget)", sql)]
    assert len(ours) == 8, ours
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
    BudgetSpend.objects.create(budget=over, period_start=today.replace(day=1), spent=Decimal("2.5"))
    fine = Budget.objects.create(name="search", scope="feature", feature="search", period="day",
                                 soft_limit=Decimal("5"))
    BudgetSpend.objects.create(budget=fine, period_start=today, spent=Decimal("1"))
    response = staff_client.get(DASHBOARD)
    reached = response.context["budgets_reached"]
    assert [(b.name, b.status) for b in reached] == [("all", "hard")]
    assert "at a limit" in response.content.decode()


# -- the request log admin ----------------------------------------------------------------------------


def test_request_log_is_read_only(seed, staff_client):
    row = LLMRequest.objects.first()
    assert staff_client.get(LOG + "add/").status_code == 403
    assert staff_client.get(f"{LOG}{row.pk}/delete/").status_code == 403
    assert staff_client.post(f"{LOG}{row.pk}/change/", {"model": "changed"}).status_code == 403
    assert LLMRequest.objects.get(pk=row.pk).model == row.model


def test_request_log_changelist_filters_and_searches(seed, staff_client):
    user = seed.users[0]
    response = staff_client.get(LOG, {"created_at_from": START.isoformat(), "created_at_to": TODAY.isoformat(),
                                      "model": "gpt-4o-mini", "user": str(user.pk), "status__exact": "success"})
    assert response.status_code == 200
    expected = {r.id for r in seed.select(START, TODAY, model="gpt-4o-mini", user_id=user.pk) if r.status == SUCCESS}
    assert {o.pk for o in response.context["cl"].result_list} == expected

    by_email = staff_client.get(LOG, {"user": user.email})
    assert by_email.context["cl"].result_count == sum(r.user_id == user.pk for r in seed.records)
    cached = staff_client.get(LOG, {"cached__exact": "1", "feature": "-"})
    assert cached.context["cl"].result_count == sum(r.cached and r.feature == "" for r in seed.records)

    one = seed.records[5]
    for term in (str(one.id), one.request_id):
        found = staff_client.get(LOG, {"q": term})
        assert [o.pk for o in found.context["cl"].result_list] == [one.id]
    assert staff_client.get(LOG, {"q": "gpt-4o-mini"}).context["cl"].result_count == sum(
        r.model == "gpt-4o-mini" for r in seed.records)
    # A substring is not searched (it would read every row).
    assert staff_client.get(LOG, {"q": "gpt-4o-mi"}).context["cl"].result_count == 0


def test_request_log_unfiltered_never_counts_the_table(seed, staff_client, monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE llm_llmrequest")  # what autovacuum keeps current in production
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 50)  # a "large" table here
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG)
    assert response.status_code == 200
    log_queries = [q["sql"] for q in captured.captured_queries if "llm_llmrequest" in q["sql"]]
    assert not [sql for sql in log_queries if "COUNT(" in sql.upper()], log_queries
    assert not [sql for sql in log_queries if "DISTINCT" in sql.upper()], log_queries
    # The page's rows: newest first, one page, by the created_at index.
    rows = response.context["cl"].result_list
    assert [o.pk for o in rows] == [r.id for r in sorted(seed.records, key=lambda r: r.created_at, reverse=True)][:100]
    assert response.context["cl"].paginator.estimated
    assert re.search(r"about\s+\d+", response.content.decode())
    # Filtered: counting stops after exact_limit + 1 rows, then the planner's estimate is used.
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG, {"status__exact": "success"})
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 51" in sql for sql in counts), counts


def test_request_log_small_table_is_counted_exactly_but_bounded(seed, staff_client):
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG)
    assert response.context["cl"].result_count == len(seed.records)
    assert not response.context["cl"].paginator.estimated
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert all("LIMIT" in sql for sql in counts)
    # The filter choices were read without scanning: models and features are all offered.
    html = response.content.decode()
    for _, model in MODELS:
        assert f'value="{model}"' in html


def test_request_log_date_drill_down(seed, staff_client):
    day = TODAY - timedelta(days=2)
    response = staff_client.get(LOG, {"created_at__year": day.year, "created_at__month": day.month})
    hierarchy = response.context["cl"].fast_date_hierarchy
    assert hierarchy["show"] and hierarchy["choices"]
    response = staff_client.get(LOG, {"created_at__year": day.year, "created_at__month": day.month,
                                      "created_at__day": day.day})
    assert {o.pk for o in response.context["cl"].result_list} == {r.id for r in seed.select(day, day)}


def test_request_detail_shows_the_prompt_and_never_a_key(seed, staff_client):
    record = CallRecord(endpoint="chat", provider="openai", requested_model="gpt-4o", model="gpt-4o", status=SUCCESS,
                        usage=Usage(prompt_tokens=12, completion_tokens=3, total_tokens=15), cost=Decimal("0.00004"),
                        latency_ms=321.0, key_fingerprint="0123456789ab", feature="support.reply",
                        prompt=[{"role": "system", "content": "You are <b>terse</b>."},
                                {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}],
                        response_text="4, obviously.")
    write_records([record], store_text=True)
    response = staff_client.get(f"{LOG}{record.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "What is 2+2?" in html and "You are &lt;b&gt;terse&lt;/b&gt;." in html and "4, obviously." in html
    assert "0123456789ab" in html and SECRET not in html and "sk-" not in html

    hidden = CallRecord(endpoint="chat", provider="openai", requested_model="gpt-4o", model="gpt-4o", status=SUCCESS)
    write_records([hidden], store_text=False)
    assert "Not stored" in staff_client.get(f"{LOG}{hidden.id}/change/").content.decode()


# -- budgets and daily usage ---------------------------------------------------------------------------


def test_budget_list_shows_use_against_limits(db, staff_client, django_user_model):
    today = timezone.localdate()
    user = django_user_model.objects.create_user(email="spender@example.com", username="spender", password="x")
    monthly = Budget.objects.create(name="company", soft_limit=Decimal("50"), hard_limit=Decimal("100"))
    BudgetSpend.objects.create(budget=monthly, period_start=today.replace(day=1), spent=Decimal("60"),
                               reserved=Decimal("1.5"))
    # Last month's spend is not this period's.
    BudgetSpend.objects.create(budget=monthly, period_start=(today.replace(day=1) - timedelta(days=1)).replace(day=1),
                               spent=Decimal("99"))
    daily = Budget.objects.create(name="alice daily", scope="user", user=user, period="day", hard_limit=Decimal("2"))
    BudgetSpend.objects.create(budget=daily, period_start=today, spent=Decimal("2"))
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
    response = staff_client.post("/admin/llm/budget/add/", {
        "name": "bad", "scope": "global", "period": "month", "soft_limit": "10", "hard_limit": "5", "is_active": "on",
        "spends-TOTAL_FORMS": "0", "spends-INITIAL_FORMS": "0"})
    assert response.status_code == 200 and not Budget.objects.filter(name="bad").exists()  # soft above hard


def test_daily_usage_admin_and_navigation(seed, staff_client):
    response = staff_client.get("/admin/llm/llmusagedaily/", {"model": "gpt-4o-mini"})
    assert response.status_code == 200
    assert sum(r.requests for r in response.context["cl"].result_list) == sum(
        r.model == "gpt-4o-mini" for r in seed.records)
    assert DASHBOARD in response.content.decode()
    assert staff_client.get("/admin/llm/llmusagedaily/add/").status_code == 403
    # The sidebar links to the dashboard and the usage pages.
    index = staff_client.get("/admin/").content.decode()
    for link in (DASHBOARD, LOG, "/admin/llm/budget/", "/admin/llm/llmusagedaily/"):
        assert f'href="{link}"' in index
