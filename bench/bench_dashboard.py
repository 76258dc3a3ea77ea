"""The cost dashboard and the request-log changelist at 1M and 10M requests, vs the raw table.

Runs in a scratch database (default `bench_dashboard`, dropped at the end unless `--keep`),
seeded exactly as `bench_usage_stats.py` seeds it (PostgreSQL COPY; 90 days, 15 models, ~200
users, 10 features; rollups built from the rows and checked against them). Then, the cases
in rotating order, each path in its own loop (a raw pass reads the whole log and would evict
the rollups from the caches between two dashboard views):

1. the dashboard (GET through Django's test client, logged in as staff) for several periods
   and filters, against the same figures computed straight from `LLMRequest` (headline for the
   period and the one before, spend/tokens/requests per day and model, latency percentiles
   per day, top users and features, the costliest calls and the latest failures); before the
   timing, the two are checked to agree (counts, spend, tokens, per-model spend, top users and
   features, costliest calls, latest failures);
2. the request-log changelist's first page (GET through the test client) with its estimated
   count, against the same page served by a copy of its admin with Django's stock paginator
   and full result count (an exact `COUNT(*)`, twice when filtered).

3. attribution (issue 15): about 30% of the rows carry tags (one or two of a few, as
   `llm_context(tags=...)` would), and about 20% belong to traces (calls of one user and
   feature in one hour; roots in `LLMTrace` with their totals). The dashboard with `?tag=`
   (headline, charts and request tables from the tag rollup) is among the dashboard cases, and
   the most expensive traces (the panel's query) are timed against the same top 10 computed
   from the log; spend by tag and the traces are checked equal to the log's first.

Targets (issue 6): dashboard p95 < 200 ms at 10M rows; changelist first page < 300 ms.

    .venv/bin/python bench/bench_dashboard.py                          # 1M, then 10M rows
    .venv/bin/python bench/bench_dashboard.py --steps 1000000 --reps 20
    .venv/bin/python bench/bench_dashboard.py --steps 10000000 --keep  # then --reuse
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from datetime import UTC, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_ENV", "development")

from _setup import percentile, table
from bench_usage_stats import (
    Catalog,
    build_rollups,
    check_rollups,
    scratch_session,
    seed,
)

DASHBOARD = "/admin/llm/llmusagedaily/dashboard/"
CHANGELIST = "/admin/llm/llmrequest/"
STOCK_CHANGELIST = "/bench-stock-admin/llm/llmrequest/"


# -- the same figures, from the raw log -------------------------------------------------------------


def raw_dashboard(filters) -> dict:
    """What the dashboard shows, aggregated from LLMRequest over the same UTC days and filters."""
    from decimal import Decimal

    from django.db import connection
    from django.db.models import Count, Q, Sum, Value
    from django.db.models.functions import Coalesce, TruncDate

    from apps.llm.models import LLMRequest

    since, until = filters.window
    before, _ = filters.previous().window
    log = LLMRequest.objects.filter(filters.dimensions_q())
    if filters.tag:
        log = log.filter(tags__contains=[filters.tag])
    now, then = Q(created_at__gte=since, created_at__lt=until), Q(created_at__gte=before, created_at__lt=since)

    def sums(q: Q, prefix: str) -> dict:
        return {
            f"{prefix}requests": Count("pk", filter=q),
            f"{prefix}failures": Count("pk", filter=q & ~Q(status="success")),
            f"{prefix}cache_hits": Count("pk", filter=q & Q(cached=True)),
            f"{prefix}tokens": Sum("total_tokens", filter=q & Q(cached=False)),
            f"{prefix}cost": Sum("cost", filter=q),
            f"{prefix}saved": Sum("saved_cost", filter=q),
        }

    both = log.filter(created_at__gte=before, created_at__lt=until)
    figures = both.aggregate(**sums(now, "cur_"), **sums(then, "prev_"))
    current = log.filter(now)
    per_day_model = list(
        current.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "provider", "model")
        .annotate(
            cost=Sum("cost"),
            requests=Count("pk"),
            failures=Count("pk", filter=~Q(status="success")),
            prompt=Sum("prompt_tokens", filter=Q(cached=False)),
            cached_read=Sum("cached_tokens", filter=Q(cached=False)),
            output=Sum("completion_tokens", filter=Q(cached=False)),
        )
        .order_by()
    )
    dims, params = filters.dimensions_sql()
    if filters.tag:
        dims, params = f"{dims} AND tags @> ARRAY[%s]::varchar[]", [*params, filters.tag]
    with connection.cursor() as cursor:  # exact percentiles, per period and per day
        cursor.execute(
            f"SELECT (created_at AT TIME ZONE 'UTC')::date, "
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM llm_llmrequest WHERE created_at >= %s AND created_at < %s AND {dims} "
            f"GROUP BY GROUPING SETS ((), (1))",
            [since, until, *params],
        )
        latency = cursor.fetchall()
    spent = Coalesce(Sum("cost"), Value(Decimal(0)))  # a user of unpriced models only spent 0, not NULL
    users = list(
        current.values("user_id")
        .annotate(cost=spent, requests=Count("pk"))
        .order_by("-cost", "-requests", "user_id")[:10]
    )
    features = list(
        current.values("feature")
        .annotate(cost=spent, requests=Count("pk"))
        .order_by("-cost", "-requests", "feature")[:10]
    )
    expensive = list(current.filter(cost__isnull=False).order_by("-cost", "id").values_list("pk", "cost")[:10])
    failures = list(current.filter(status="error").order_by("-created_at", "id").values_list("pk", flat=True)[:10])
    return {
        "figures": figures,
        "per_day_model": per_day_model,
        "latency": latency,
        "users": users,
        "features": features,
        "expensive": expensive,
        "failures": failures,
    }


def check_same(dashboard, raw: dict, name: str) -> None:
    """The dashboard's figures (from rollups) against the raw log's; raises if one differs."""
    from collections import defaultdict
    from decimal import Decimal

    f = raw["figures"]
    for attr, key in (
        ("requests", "requests"),
        ("failures", "failures"),
        ("cache_hits", "cache_hits"),
        ("total_tokens", "tokens"),
        ("cost", "cost"),
        ("saved_cost", "saved"),
    ):
        for totals, prefix in ((dashboard.current, "cur_"), (dashboard.previous, "prev_")):
            assert getattr(totals, attr) == (f[prefix + key] or 0), (name, prefix + attr, getattr(totals, attr), f)
    if dashboard.filters.tag:  # per model, user and feature: not in the tag rollup, and not shown
        assert not (dashboard.models or dashboard.users or dashboard.features), (name, "not narrowed by tag")
        assert {"models", "users", "features"} <= dashboard.not_narrowed, name
        raw = {**raw, "per_day_model": [], "users": [], "features": []}
    per_model: dict = defaultdict(Decimal)
    for row in raw["per_day_model"]:
        per_model[(row["provider"], row["model"])] += row["cost"] or 0
    shown = {(row.filters.provider, row.filters.model): row.cost for row in dashboard.models}
    assert shown == dict(per_model.items()), (name, "per-model spend")
    assert sum(dashboard.daily.requests) == f["cur_requests"], (name, "daily requests")
    assert [(r.filters.user_id, r.cost) for r in dashboard.users] == [
        (u["user_id"], u["cost"]) for u in raw["users"]
    ], (name, "users")
    assert [(r.filters.feature, r.cost) for r in dashboard.features] == [
        (x["feature"], x["cost"]) for x in raw["features"]
    ], (name, "features")
    assert [(c.id, c.cost) for c in dashboard.expensive.rows] == raw["expensive"], (name, "costliest calls")
    assert [c.id for c in dashboard.failures.rows] == raw["failures"], (name, "latest failures")


# -- cases ------------------------------------------------------------------------------------------


def dashboard_cases() -> list[tuple[str, dict]]:
    from django.db.models import Sum

    from apps.llm.dashboard import rollup_today
    from apps.llm.models import LLMUsageByUser

    since = rollup_today() - timedelta(days=29)
    by_user = list(
        LLMUsageByUser.objects.filter(date__gte=since, user_id__isnull=False)
        .values("user_id")
        .annotate(n=Sum("requests"))
        .order_by("-n", "user_id")
        .values_list("user_id", flat=True)
    )
    return [
        ("30 days (default)", {}),
        ("90 days", {"period": "90"}),
        ("today", {"period": "today"}),
        ("30 days, model=gpt-4o-mini", {"model": "gpt-4o-mini"}),
        ("30 days, feature=chat.assistant", {"feature": "chat.assistant"}),
        (f"30 days, user={by_user[0]} (busiest)", {"user": str(by_user[0])}),
        (f"30 days, user={by_user[len(by_user) // 2]} (median)", {"user": str(by_user[len(by_user) // 2])}),
        (
            "90 days, provider=openai, feature=code.review",
            {"period": "90", "provider": "openai", "feature": "code.review"},
        ),
        # Users crossed with models: the finest rollup, and the request tables from the log.
        (f"30 days, user={by_user[0]}, model=gpt-4o-mini", {"user": str(by_user[0]), "model": "gpt-4o-mini"}),
    ]


def tag_cases() -> list[tuple[str, dict]]:
    return [
        ("30 days, tag=support", {"tag": "support"}),
        ("90 days, tag=exp:b", {"period": "90", "tag": "exp:b"}),
        ("today, tag=exp:a", {"period": "today", "tag": "exp:a"}),
        ("30 days, tag=ticket-42 (rare)", {"tag": "ticket-42"}),
    ]


def trace_cases() -> list[tuple[str, dict]]:
    return [("traces, 30 days", {}), ("traces, 90 days", {"period": "90"}), ("traces, today", {"period": "today"})]


# -- attribution: tags and traces on a share of the rows ------------------------------------------------


def seed_attribution() -> float:
    """Tag ~30% of the rows and put ~20% in traces (idempotent: only rows not yet attributed); seconds."""
    from django.db import connection

    started = time.perf_counter()
    byte = "get_byte(uuid_send(id), {})"
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute(
            f"""
            UPDATE llm_llmrequest SET tags = (CASE {byte.format(1)} % 8
                WHEN 0 THEN ARRAY['support'] WHEN 1 THEN ARRAY['support'] WHEN 2 THEN ARRAY['support']
                WHEN 3 THEN ARRAY['support', 'exp:a'] WHEN 4 THEN ARRAY['exp:a'] WHEN 5 THEN ARRAY['exp:b']
                WHEN 6 THEN ARRAY['beta', 'support']
                ELSE CASE WHEN {byte.format(2)} < 8 THEN ARRAY['ticket-42'] ELSE ARRAY['exp:b'] END
            END)::varchar[]
            WHERE tags = '{{}}' AND {byte.format(0)} < 77
            """
        )
        # A trace: the calls of one user and feature in one hour (its id derived from them).
        cursor.execute(
            f"""
            UPDATE llm_llmrequest SET trace_id = t.id, span_id = t.id
            FROM (SELECT id AS call, md5(coalesce(user_id::text, '-') || feature
                         || date_trunc('hour', created_at)::text)::uuid AS id
                  FROM llm_llmrequest WHERE trace_id IS NULL AND {byte.format(0)} BETWEEN 77 AND 127) t
            WHERE llm_llmrequest.id = t.call
            """
        )
        # Their roots, with the totals the request-log writer keeps (recomputed: a later step adds calls).
        cursor.execute(
            """
            INSERT INTO llm_llmtrace (id, trace_id, parent_id, name, subject_type_id, subject_id, user_id, status,
                                      error, started_at, ended_at, requests, failures, cache_hits, total_tokens,
                                      cost, latency_ms_sum)
            SELECT trace_id, trace_id, NULL, 'reply.' || min(feature), NULL, NULL, min(user_id), 'ok', '',
                   min(created_at), max(created_at), count(*), count(*) FILTER (WHERE status = 'error'),
                   count(*) FILTER (WHERE cached), coalesce(sum(total_tokens) FILTER (WHERE NOT cached), 0),
                   coalesce(sum(cost), 0), sum(latency_ms)
            FROM llm_llmrequest WHERE trace_id IS NOT NULL GROUP BY trace_id
            ON CONFLICT (id) DO UPDATE SET started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,
                requests = EXCLUDED.requests, failures = EXCLUDED.failures, cache_hits = EXCLUDED.cache_hits,
                total_tokens = EXCLUDED.total_tokens, cost = EXCLUDED.cost, latency_ms_sum = EXCLUDED.latency_ms_sum
            """
        )
        cursor.execute("RESET work_mem")
    return time.perf_counter() - started


def raw_traces(filters) -> list:
    """The most expensive traces started in the period, from the log: (trace id, cost), costliest first."""
    from django.db import connection

    since, until = filters.window
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.trace_id, coalesce(sum(r.cost), 0) AS cost FROM llm_llmrequest r "
            "JOIN llm_llmtrace t ON t.id = r.trace_id AND t.parent_id IS NULL "
            "WHERE t.started_at >= %s AND t.started_at < %s GROUP BY r.trace_id ORDER BY cost DESC, r.trace_id LIMIT 10",
            [since, until],
        )
        return cursor.fetchall()


def raw_tags(filters) -> list:
    """Spend by tag over the period, from the log: (tag, calls, cost), biggest first."""
    from django.db import connection

    since, until = filters.window
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tag, count(*), coalesce(sum(cost), 0) AS cost FROM llm_llmrequest, unnest(tags) AS tag "
            "WHERE created_at >= %s AND created_at < %s GROUP BY tag ORDER BY cost DESC, count(*) DESC, tag LIMIT 10",
            [since, until],
        )
        return cursor.fetchall()


def changelist_cases() -> list[tuple[str, dict]]:
    return [
        ("first page", {}),
        ("status=error", {"status__exact": "error"}),
        ("model=o4-mini", {"model": "o4-mini"}),
        ("feature=code.review, cached", {"feature": "code.review", "cached__exact": "1"}),
    ]


def stock_admin_urls():
    """A URLconf with a copy of the request-log admin that uses Django's stock pagination."""
    from django.contrib import admin
    from django.core.paginator import Paginator
    from django.urls import path

    import config.urls
    from apps.llm.admin.request_log import LLMRequestAdmin
    from apps.llm.models import LLMRequest

    class StockPaginationAdmin(LLMRequestAdmin):
        paginator = Paginator
        show_full_result_count = True

    site = type(admin.site)(name="bench_stock")  # the project's (Unfold's) admin site class
    site.register(LLMRequest, StockPaginationAdmin)
    module = types.ModuleType("bench_dashboard_urls")
    module.urlpatterns = [path("bench-stock-admin/", site.urls), *config.urls.urlpatterns]
    sys.modules[module.__name__] = module
    return module.__name__


def get(client, url: str, params: dict) -> None:
    response = client.get(url, params)
    assert response.status_code == 200, (url, params, response.status_code)


def timings(cases: list[tuple[str, dict]], rounds: int, run) -> dict[str, list[float]]:
    """Seconds per call of ``run(params)``, per case; the cases in rotating order each round."""
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    for rep in range(rounds):
        for name, params in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
            started = time.perf_counter()
            run(params)
            times[name].append(time.perf_counter() - started)
    return times


def compare(ours: dict[str, list[float]], baseline: dict[str, list[float]], target_ms: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, values in ours.items():
        o50, o95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
        if not baseline[name]:  # --raw-reps 0: the figures were still checked, the baseline not timed
            rows.append([name, o50, o95, "-", "-", "yes" if o95 < target_ms else "NO"])
            continue
        b50 = statistics.median(baseline[name]) * 1000
        rows.append([name, o50, o95, b50, b50 / o50, "yes" if o95 < target_ms else "NO"])
    return rows


def measure(client, reps: int, raw_reps: int) -> tuple[list[list[object]], list[list[object]]]:
    """(dashboard rows, changelist rows): case, p50, p95, baseline p50, ratio, target met."""
    from apps.llm.dashboard import DashboardFilters, build_dashboard, expensive_traces

    cases = dashboard_cases() + tag_cases()
    for name, params in cases:  # warm-up, and the rollups against the raw log
        filters = DashboardFilters.from_query(params)
        data = build_dashboard(filters)
        check_same(data, raw_dashboard(filters), name)
        if not params.get("tag") and set(params) <= {"period"}:
            assert [(r.label, r.requests, r.cost) for r in data.tags] == raw_tags(filters), (name, "tags")
            assert [(t.id, t.cost) for t in data.traces] == raw_traces(filters), (name, "traces")
        get(client, DASHBOARD, params)
    # The views first, then the raw path (see the module's docstring).
    views = timings(cases, reps, lambda params: get(client, DASHBOARD, params))
    raw = timings(cases, raw_reps, lambda params: raw_dashboard(DashboardFilters.from_query(params)))
    dashboard = compare(views, raw, target_ms=200)
    print(
        f"\nDashboard view (test client GET, staff) vs the same figures from the raw log; {reps} view and "
        f"{raw_reps} raw repetitions, cases in rotating order; figures checked equal first\n"
    )
    print(table(["case", "view p50 ms", "view p95 ms", "raw p50 ms", "raw/view", "p95 < 200 ms"], dashboard))

    cases = trace_cases()
    for name, params in cases:
        filters = DashboardFilters.from_query(params)
        assert [(t.id, t.cost) for t in expensive_traces(filters)] == raw_traces(filters), name
    ours = timings(cases, reps, lambda params: expensive_traces(DashboardFilters.from_query(params)))
    raw = timings(cases, raw_reps, lambda params: raw_traces(DashboardFilters.from_query(params)))
    traces = compare(ours, raw, target_ms=200)
    print(
        f"\nMost expensive traces (the panel's query on LLMTrace roots) vs the same top 10 summed from the log; "
        f"{reps} and {raw_reps} repetitions; checked equal first\n"
    )
    print(table(["case", "ours p50 ms", "ours p95 ms", "raw p50 ms", "raw/ours", "p95 < 200 ms"], traces))
    dashboard += traces

    cases = changelist_cases()
    for _, params in cases:
        get(client, CHANGELIST, params)
        if raw_reps:
            get(client, STOCK_CHANGELIST, params)
    ours = timings(cases, reps, lambda params: get(client, CHANGELIST, params))
    stock = timings(cases, raw_reps, lambda params: get(client, STOCK_CHANGELIST, params))
    changelist = compare(ours, stock, target_ms=300)
    print(
        f"\nRequest-log changelist, first page (test client GET): estimated count vs Django's stock paginator "
        f"(exact COUNT); {reps} and {raw_reps} repetitions\n"
    )
    print(table(["filter", "ours p50 ms", "ours p95 ms", "stock p50 ms", "stock/ours", "p95 < 300 ms"], changelist))
    return dashboard, changelist


def rollup_sizes() -> list[list[object]]:
    from django.db import connection

    from apps.llm.accounting.rollups import all_rollups

    rows = []
    with connection.cursor() as cursor:
        from apps.llm.accounting.rollups import tag_rollup

        for rollup in [*all_rollups(), tag_rollup(), None]:
            name = rollup.table if rollup else "llm_llmrequest"
            cursor.execute(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size(%s)), "
                f"count(*) FILTER (WHERE {'date' if rollup else 'created_at'} >= current_date - 29) "
                f"FROM {name}",
                [name],
            )
            rows.append([name, *cursor.fetchone()])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="1000000,10000000", help="grow the log through these sizes")
    parser.add_argument("--reps", type=int, default=30, help="timed requests per case")
    parser.add_argument(
        "--raw-reps",
        type=int,
        default=3,
        help="timed raw-log computations per case (0: none; at 10M rows they take most of the run)",
    )
    parser.add_argument("--db", default="bench_dashboard", help="the scratch database's name (bench_...)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database at the end")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing scratch database and its rows")
    parser.add_argument("--rebuild-rollups", action="store_true", help="rebuild the rollups of a reused database")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    assert steps == sorted(steps), "--steps must grow"

    with scratch_session(args.db, reuse=args.reuse, keep=args.keep):
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client, override_settings

        from apps.llm.models import LLMRequest

        cat = Catalog(args.seed)
        staff = get_user_model().objects.filter(
            email="bench@example.com"
        ).first() or get_user_model().objects.create_superuser(email="bench@example.com", password="bench-password-0")
        client = Client(SERVER_NAME="localhost")
        client.force_login(staff)
        summary = []
        with override_settings(ROOT_URLCONF=stock_admin_urls()):
            for target in steps:
                present = LLMRequest.objects.count()
                print(f"\n=== {target:,} rows (present: {present:,}) ===")
                if present < target:
                    seconds = seed(cat, target - present, args.seed + present)
                    print(f"  COPY: {target - present:,} rows in {seconds:.1f} s")
                if present < target or args.rebuild_rollups:
                    print(f"  tags and traces set in {seed_attribution():.1f} s")
                    print(f"  rollups rebuilt in {build_rollups():.1f} s")
                    with connection.cursor() as cursor:
                        for name in (
                            "llm_llmrequest",
                            "llm_llmusagedaily",
                            "llm_llmusagebymodel",
                            "llm_llmusagebyuser",
                            "llm_llmusagebytag",
                            "llm_llmtrace",
                        ):
                            cursor.execute(f"VACUUM (ANALYZE) {name}")
                check_rollups()
                print("\nTables (rows, size, rows of the last 30 days)\n")
                print(table(["table", "rows", "size", "last 30 days"], rollup_sizes()))
                dashboard, changelist = measure(client, args.reps, args.raw_reps)
                rows = f"{LLMRequest.objects.count():,}"
                summary += [[rows, "dashboard", *r[:4]] for r in dashboard]
                summary += [[rows, "changelist", *r[:4]] for r in changelist]
                print(f"\n(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        if len(steps) > 1:
            print("\nAll steps (ms)\n")
            print(table(["rows", "page", "case", "p50", "p95", "baseline p50"], summary))


if __name__ == "__main__":
    main()
