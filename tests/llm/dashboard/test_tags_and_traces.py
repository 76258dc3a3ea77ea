"""The dashboard's tag filter, spend by tag and most expensive traces, against the seeded calls.

Calls are written with ``write_records`` (rows, rollups and trace totals as in production); every
expected figure is a plain Python sum over the ``CallRecord`` objects themselves.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from apps.llm.accounting.records import ERROR, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.admin.dashboard import request_log_url, trace_url
from apps.llm.dashboard import DashboardFilters, build_dashboard
from apps.llm.models import LLMTrace
from tests.llm.dashboard.seeded import (
    DASHBOARD,
    PREVIOUS_START,
    START,
    TODAY,
    check_totals,
    filters,
    make_records,
    money,
)

TAGS = ["support", "exp:a", "exp:b"]


@dataclass
class Tagged:
    records: list[CallRecord]
    #: root id -> the records of the trace (its root span and its child span)
    traces: dict[uuid.UUID, list[CallRecord]]
    started: dict[uuid.UUID, datetime]
    child: uuid.UUID

    def with_tag(self, tag: str, start=START, end=TODAY) -> list[CallRecord]:
        return [r for r in self.records if tag in r.tags and start <= r.created_at.date() <= end]


@pytest.fixture
def tagged(db, django_user_model) -> Tagged:
    users = [
        django_user_model.objects.create_user(email=f"tagger{i}@example.com", username=f"tagger{i}", password="x")
        for i in (1, 2)
    ]
    rng = random.Random(15_2026)
    records = []
    for r in make_records(users, rng):
        roll = rng.random()
        tags = (
            () if roll < 0.3 else ("support",) if roll < 0.55 else ("exp:a", "support") if roll < 0.75 else ("exp:b",)
        )
        records.append(replace(r, tags=tags))
    # Traces: groups of four calls each, some started before the period (not listed), one with a child span.
    traces: dict[uuid.UUID, list[CallRecord]] = {}
    started: dict[uuid.UUID, datetime] = {}
    order = sorted(range(len(records)), key=lambda i: records[i].created_at)
    child = uuid.uuid4()
    for n, first in enumerate(range(0, 4 * 16, 4)):
        root = uuid.uuid4()
        members = order[first * 3 : first * 3 + 4]  # spread over the fortnight
        started[root] = records[members[0]].created_at - timedelta(seconds=1)
        LLMTrace.objects.create(id=root, trace_id=root, name=f"support.reply {n}", started_at=started[root])
        for position, i in enumerate(members):
            span = child if n == 15 and position >= 2 else root
            records[i] = replace(records[i], trace_id=root, span_id=span)
            if span == child:  # the costliest span of all: listed if spans were taken for traces
                records[i] = replace(records[i], status=SUCCESS, cached=False, cost=Decimal(5), error_type="")
        traces[root] = [records[i] for i in members]
        if n == 15:
            LLMTrace.objects.create(
                id=child, trace_id=root, parent_id=root, name="draft", started_at=started[root] + timedelta(seconds=1)
            )
    assert write_records(records) == len(records)
    return Tagged(records=records, traces=traces, started=started, child=child)


def ranked_calls(records: list[CallRecord], limit: int = 10) -> list[uuid.UUID]:
    priced = sorted((r for r in records if r.cost is not None), key=lambda r: r.id)
    return [r.id for r in sorted(priced, key=lambda r: r.cost, reverse=True)[:limit]]


def latest_failures(records: list[CallRecord]) -> list[uuid.UUID]:
    failed = sorted((r for r in records if r.status == ERROR), key=lambda r: r.id)
    return [r.id for r in sorted(failed, key=lambda r: r.created_at, reverse=True)[:10]]


def test_a_tag_narrows_the_totals_charts_and_request_tables(tagged):
    data = build_dashboard(filters(tag="support"))
    current = tagged.with_tag("support")
    assert len(current) > 40
    check_totals(data.current, current)
    check_totals(data.previous, tagged.with_tag("support", PREVIOUS_START, START - timedelta(days=1)))
    assert data.daily.cost == [money(r for r in current if r.created_at.date() == d) for d in data.daily.days]
    assert data.daily.requests == [sum(r.created_at.date() == d for r in current) for d in data.daily.days]
    # The spend chart: the tag's own spend per day, one series (no model in the tag rollup).
    ((label, _, values),) = data.daily.cost_by_model
    assert label == "Tag support" and values == data.daily.cost
    assert [c.id for c in data.expensive.rows] == ranked_calls(current)
    assert [c.id for c in data.failures.rows] == latest_failures(current)
    # What the tag rollup cannot narrow is not shown, and said so.
    assert data.models == data.users == data.features == data.accuracy.drifts == []
    assert {"models", "users", "features", "drifts", "traces"} <= data.not_narrowed
    assert data.accuracy.total.calls == sum(r.cost is not None and r.provider_cost is not None for r in current)
    # The filter choices still list the period's models and users.
    assert data.options.models and data.options.users and data.options.tags == sorted(TAGS)


def test_a_tag_without_its_rollup_lists_falls_back_to_the_log(tagged, monkeypatch):
    """The request tables under a tag read the rollup's lists; with none (limit above them), the log."""
    from apps.llm.dashboard import calls

    current = tagged.with_tag("exp:a")
    f = filters(tag="exp:a")
    assert [c.id for c in calls.most_expensive_calls(f, limit=11).rows] == ranked_calls(current, 11)
    monkeypatch.setattr(calls, "RANGE_SCAN_MAX", 0)  # the probe of the cost index, narrowed by the tag
    assert [c.id for c in calls.most_expensive_calls(f, limit=11).rows] == ranked_calls(current, 11)


def test_spend_by_tag(tagged):
    data = build_dashboard(filters())
    rows = {row.label: row for row in data.tags}
    assert set(rows) == set(TAGS)
    for tag in TAGS:
        calls = tagged.with_tag(tag)
        assert rows[tag].requests == len(calls)
        assert rows[tag].cost == money(calls)
        assert rows[tag].failures == sum(r.status == ERROR for r in calls)
        assert rows[tag].filters == DashboardFilters(start=START, end=TODAY, period="custom", tag=tag)
    assert [row.cost for row in data.tags] == sorted((row.cost for row in data.tags), reverse=True)
    # A call with two tags is in both rows; untagged calls in none.
    in_period = [r for r in tagged.records if START <= r.created_at.date() <= TODAY]
    assert sum(row.requests for row in data.tags) == sum(len(r.tags) for r in in_period) != len(in_period)
    # Under a tag: that tag's row only. Under a model: nothing, said so.
    assert [row.label for row in build_dashboard(filters(tag="exp:b")).tags] == ["exp:b"]
    by_model = build_dashboard(filters(model="gpt-4o-mini"))
    assert by_model.tags == [] and "tags" in by_model.not_narrowed and by_model.models


def test_most_expensive_traces(tagged):
    data = build_dashboard(filters())
    window = [root for root, at in tagged.started.items() if START <= at.date() <= TODAY]
    assert 3 < len(window) < len(tagged.traces)
    expected = sorted(sorted(window), key=lambda root: money(tagged.traces[root]), reverse=True)[:10]
    assert [t.id for t in data.traces] == expected
    for trace in data.traces:
        calls = tagged.traces[trace.id]
        assert trace.cost == money(calls)
        assert trace.requests == len(calls)
        assert trace.failures == sum(r.status == ERROR for r in calls)
        assert trace.total_tokens == sum(r.usage.total_tokens for r in calls if not r.cached)
    # Roots only: the child span costs more than every other trace, and is not one.
    assert money(tagged.traces[data.traces[0].id]) > 10
    longer = DashboardFilters(start=START - timedelta(days=30), end=TODAY, period="custom")
    assert tagged.child not in {t.id for t in build_dashboard(longer).traces}
    # Narrowed by anything but the period: not shown (a trace spans models, features and tags).
    for narrowed in (filters(tag="support"), filters(feature="search")):
        data = build_dashboard(narrowed)
        assert data.traces == [] and "traces" in data.not_narrowed


def test_the_page_with_a_tag(tagged, client, admin_user):
    client.force_login(admin_user)
    params = {"period": "custom", "start": START.isoformat(), "end": TODAY.isoformat()}
    page = client.get(DASHBOARD, params | {"tag": "support"})
    assert page.status_code == 200
    html = page.content.decode()
    for section in ("models", "users", "features", "drifts", "traces"):
        assert f'data-not-narrowed="{section}"' in html, section
    assert 'data-not-narrowed="tags"' not in html
    assert '<option value="support" selected>' in html
    # The figures link to the tag's calls in the request log (its search), which lists exactly them.
    log = client.get(request_log_url(filters(tag="support")))
    assert log.status_code == 200
    assert log.context["cl"].result_count == len(tagged.with_tag("support"))

    page = client.get(DASHBOARD, params)
    html = page.content.decode()
    assert 'id="llm-tags"' in html and 'id="llm-traces"' in html and "data-not-narrowed" not in html
    top = build_dashboard(filters()).traces[0]
    link = trace_url(top)
    assert link in html
    opened = client.get(link)
    assert opened.status_code == 200
    if "llmrequest" in link:  # the trace admin is not registered yet: the trace's calls in the log
        assert opened.context["cl"].result_count == len(tagged.traces[top.id])


def test_a_tag_with_another_filter_keeps_the_tag(tagged, client, admin_user):
    client.force_login(admin_user)
    page = client.get(DASHBOARD, {"tag": "support", "model": "gpt-4o"})
    assert page.status_code == 200
    assert page.context["data"].filters.tag == "support" and not page.context["data"].filters.model
    assert "model filter was ignored" in page.content.decode()
    assert client.get(DASHBOARD, {"tag": "support", "export": "models"}).status_code == 400
    assert client.get(DASHBOARD, {"model": "gpt-4o", "export": "tags"}).status_code == 400


def test_tag_and_trace_exports(tagged, client, admin_user):
    client.force_login(admin_user)
    params = {"period": "custom", "start": START.isoformat(), "end": TODAY.isoformat()}
    rows = list(csv.reader(io.StringIO(client.get(DASHBOARD, params | {"export": "tags"}).content.decode())))
    assert rows[0][0] == "tag"
    assert {row[0]: Decimal(row[6]) for row in rows[1:]} == {tag: money(tagged.with_tag(tag)) for tag in TAGS}
    rows = list(csv.reader(io.StringIO(client.get(DASHBOARD, params | {"export": "traces"}).content.decode())))
    assert rows[0][0] == "trace_id"
    assert [(uuid.UUID(row[0]), Decimal(row[-1])) for row in rows[1:]] == [
        (t.id, t.cost) for t in build_dashboard(filters()).traces
    ]


def test_the_tag_figures_cost_a_fixed_number_of_queries(tagged):
    """The tag's figures read the tag rollup: as many queries for a week as for a quarter, none per day or call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for days in (7, 90):
        with CaptureQueriesContext(connection) as queries:
            build_dashboard(DashboardFilters(start=TODAY - timedelta(days=days - 1), end=TODAY, tag="support"))
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 18
