"""The cost dashboard's figures, on real PostgreSQL.

Calls are written with ``write_records`` (rows and rollups exactly as in production); every
figure is checked against plain Python sums over the ``CallRecord`` objects themselves
(tests/llm/dashboard/seeded.py; the ``seed`` fixture is in tests/llm/conftest.py).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection

from apps.llm import dashboard as dash
from apps.llm.accounting.records import ERROR
from apps.llm.dashboard import DashboardFilters, build_dashboard, calls, percentile
from apps.llm.models import LATENCY_BUCKETS_MS, LLMRequest, latency_bucket
from tests.llm.dashboard.seeded import PREVIOUS_START, START, TODAY, check_totals, expect, filters, money

# -- independent expectations ----------------------------------------------------------------------


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


# -- the figures (apps/llm/dashboard) --------------------------------------------------------------


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
            e["input_tokens"],
            e["cached_tokens"],
            e["output_tokens"],
        )
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


@pytest.mark.parametrize(
    "dims",
    [
        {"model": "gpt-4o-mini"},
        {"provider": "openrouter"},
        {"user": 0},
        {"user": "none"},
        {"feature": "support.reply"},
        {"feature": ""},
        {"provider": "openai", "feature": "search", "user": 1},
    ],
)
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
        "30d", today=TODAY
    )
    assert DashboardFilters.from_query(f.query_params(), today=TODAY) == f
    huge = DashboardFilters.from_query({"period": "custom", "start": "0200-01-01", "end": "2025-01-01"}, today=TODAY)
    assert huge.days == dash.MAX_DAYS


# -- latency percentiles ---------------------------------------------------------------------------


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
    assert_same_bucket(
        data.previous.p95_ms, [r.latency_ms for r in seed.select(PREVIOUS_START, START - timedelta(1))], 0.95
    )
    for i, day in enumerate(data.daily.days):
        day_latencies = [r.latency_ms for r in seed.select(day, day)]
        assert_same_bucket(data.daily.p50_ms[i], day_latencies, 0.5)
        assert_same_bucket(data.daily.p95_ms[i], day_latencies, 0.95)


# -- the raw-log tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "range_scan_max, probe_rows",
    [
        (10**9, calls.PROBE_ROWS),  # few matches: read them all, sort
        (0, calls.PROBE_ROWS),  # many: the costliest calls of the log hold the answer
        (0, 3),  # many, but not among the costliest: the probe comes up short, then read them all
    ],
)
@pytest.mark.parametrize(
    "dims",
    [
        {},
        {"model": "gpt-4o-mini"},
        {"feature": ""},  # from the coarse rollups' lists
        {"model": "gpt-4o-mini", "user_id": "first user"},  # crossed: from the log, by the plans above
    ],
)
def test_most_expensive_and_recent_failures(seed, monkeypatch, range_scan_max, probe_rows, dims):
    monkeypatch.setattr(calls, "RANGE_SCAN_MAX", range_scan_max)
    monkeypatch.setattr(calls, "PROBE_ROWS", probe_rows)
    dims = {k: seed.users[0].pk if v == "first user" else v for k, v in dims.items()}
    assert_request_tables(seed, build_dashboard(filters(**dims)), seed.select(START, TODAY, **dims))


def assert_request_tables(seed, data, current: list) -> None:
    """The dashboard's costliest calls and latest failures are those of ``current`` (ties by id)."""
    expensive = sorted(
        sorted((r for r in current if r.cost is not None), key=lambda r: r.id), key=lambda r: r.cost, reverse=True
    )[:10]
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
    slow = LLMRequest.objects.extra(where=["pg_sleep(0.05) IS NOT NULL"])
    table = calls._raw_table(lambda: slow.order_by("-created_at").values(*calls.SUMMARY_COLUMNS)[:10])
    assert table.timed_out and table.rows == []
    # The timeout ended with the block: later queries run normally.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01), current_setting('statement_timeout')")
        assert cursor.fetchone()[1] == "0"
