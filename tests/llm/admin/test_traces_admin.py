"""The trace admin (apps/llm/admin/traces.py): the list of root traces, its filters, a trace's timeline, permissions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.llm import llm_trace
from apps.llm.accounting.records import ERROR, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.admin.formatting import money
from apps.llm.models import LLMRequest, LLMTrace
from apps.llm.types import Usage

TRACES = "/admin/llm/llmtrace/"
LOG = "/admin/llm/llmrequest/"


def call(span, *, cost: str, tokens: int, status: str = SUCCESS, cached: bool = False, latency: float = 200.0):
    """A logged call made in ``span`` (a running ``llm_trace``), as the client records it."""
    return CallRecord(
        endpoint="chat",
        provider="openai",
        requested_model="gpt-4o-mini",
        model="gpt-4o-mini",
        status=status,
        usage=Usage(prompt_tokens=max(tokens - 1, 0), completion_tokens=min(tokens, 1), total_tokens=tokens),
        cost=Decimal(cost),
        latency_ms=latency,
        cached=cached,
        error_type="RateLimitError" if status == ERROR else "",
        error_message="slow down" if status == ERROR else "",
        trace_id=span.trace_id,
        span_id=span.id,
    )


@pytest.fixture
def traces(db, django_user_model):
    """Three traces, oldest first: a support reply about a user (with nested spans and a cache hit and a
    failure), an import that raised, and a cheap one of another user without a subject."""
    alice = django_user_model.objects.create_user(username="alice", email="alice@example.com")
    bob = django_user_model.objects.create_user(username="bob", email="bob@example.com")
    ticket = django_user_model.objects.create_user(username="ticket-42", email="ticket@example.com")
    with llm_trace("support.reply", subject=ticket, user=alice) as reply:
        write_records([call(reply, cost="0.0010", tokens=100)])
        with llm_trace("retrieve") as retrieve:
            write_records([call(retrieve, cost="0.0002", tokens=20), call(retrieve, cost="0", tokens=20, cached=True)])
            with llm_trace("rerank") as rerank:
                write_records([call(rerank, cost="0.0003", tokens=30)])
        with llm_trace("draft") as draft:
            write_records([call(draft, cost="0.0040", tokens=400), call(draft, cost="0", tokens=0, status=ERROR)])
        write_records([call(reply, cost="0.0005", tokens=50)])
    with pytest.raises(RuntimeError), llm_trace("import", user=bob) as failed:
        write_records([call(failed, cost="0.0100", tokens=1000)])
        raise RuntimeError("disk full")
    with llm_trace("support.reply", user=bob) as cheap:
        write_records([call(cheap, cost="0.00001", tokens=1)])
    return {
        "alice": alice,
        "bob": bob,
        "ticket": ticket,
        "reply": reply,
        "retrieve": retrieve,
        "rerank": rerank,
        "draft": draft,
        "failed": failed,
        "cheap": cheap,
    }


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def listed(response) -> list:
    assert response.status_code == 200
    return [t.pk for t in response.context["cl"].result_list]


def test_the_list_shows_root_traces_newest_first_with_their_totals(traces, staff_client):
    response = staff_client.get(TRACES)
    assert listed(response) == [traces["cheap"].id, traces["failed"].id, traces["reply"].id]  # no spans
    html = response.content.decode()
    reply = LLMTrace.objects.get(pk=traces["reply"].id)
    calls = LLMRequest.objects.filter(trace_id=reply.pk)
    # The root's totals (kept by the log's writer) are the sums over its calls.
    assert reply.requests == calls.count() == 7
    assert reply.cost == sum(c.cost for c in calls) == Decimal("0.0060")
    assert money(reply.cost) in html and money(Decimal("0.0100")) in html
    # The subject links to its admin page; the failed trace shows its error.
    ticket = traces["ticket"]
    assert f'<a href="{change_url(ticket)}">{ContentType.objects.get_for_model(ticket).name}: {ticket}</a>' in html
    assert "RuntimeError: disk full" in html


def test_the_list_filters(traces, staff_client, django_user_model):
    reply, failed, cheap = (traces[k].id for k in ("reply", "failed", "cheap"))
    user_type = ContentType.objects.get_for_model(django_user_model)
    assert listed(staff_client.get(TRACES, {"name": "support.reply"})) == [cheap, reply]
    assert listed(staff_client.get(TRACES, {"name": "retrieve"})) == []  # a span's name: no trace
    assert listed(staff_client.get(TRACES, {"user": "bob@example.com"})) == [cheap, failed]
    assert listed(staff_client.get(TRACES, {"user": str(traces["alice"].pk)})) == [reply]
    assert listed(staff_client.get(TRACES, {"subject_type": str(user_type.pk)})) == [reply]
    assert listed(staff_client.get(TRACES, {"cost_from": "0.001", "cost_to": "0.007"})) == [reply]
    assert listed(staff_client.get(TRACES, {"cost_from": "0.007"})) == [failed]
    assert listed(staff_client.get(TRACES, {"status__exact": "error"})) == [failed]
    # Errors: the trace that raised and the one with a failed call (in a span: counted on the root).
    assert listed(staff_client.get(TRACES, {"errors": "yes"})) == [failed, reply]
    assert listed(staff_client.get(TRACES, {"errors": "no"})) == [cheap]
    # The subject types offered are those traces have (read by a skip scan of the index).
    assert f'value="{user_type.pk}"' in staff_client.get(TRACES).content.decode()
    # Ordered by cost, most expensive first.
    assert listed(staff_client.get(TRACES, {"o": "-7"})) == [failed, reply, cheap]  # the cost column


def test_the_list_never_counts_every_trace(traces, staff_client):
    with CaptureQueriesContext(connection) as captured:
        assert staff_client.get(TRACES).status_code == 200
    counts = [
        q["sql"] for q in captured.captured_queries if "llm_llmtrace" in q["sql"] and "COUNT(" in q["sql"].upper()
    ]
    assert counts and all("LIMIT" in sql for sql in counts), counts
    # The list reads roots only, the condition of its partial indexes.
    selects = [q["sql"] for q in captured.captured_queries if q["sql"].startswith('SELECT "llm_llmtrace"."id"')]
    assert selects and all('"llm_llmtrace"."parent_id" IS NULL' in sql for sql in selects)


def test_the_trace_page_shows_spans_nested_and_calls_under_their_spans(traces, staff_client):
    reply = LLMTrace.objects.get(pk=traces["reply"].id)
    response = staff_client.get(f"{TRACES}{reply.pk}/change/")
    assert response.status_code == 200
    rows = response.context["timeline"]
    spans = {str(traces[k].id): k for k in ("reply", "retrieve", "rerank", "draft")}
    shape = [(row.depth, row.kind, spans[row.span_id]) for row in rows]
    assert shape == [
        (0, "span", "reply"),
        (1, "call", "reply"),
        (1, "span", "retrieve"),
        (2, "call", "retrieve"),
        (2, "call", "retrieve"),
        (2, "span", "rerank"),
        (3, "call", "rerank"),
        (1, "span", "draft"),
        (2, "call", "draft"),
        (2, "call", "draft"),
        (1, "call", "reply"),
    ]
    calls = list(LLMRequest.objects.filter(trace_id=reply.pk).order_by("created_at"))
    call_rows = [row for row in rows if row.kind == "call"]
    # Every call once, each linking to its own page, with its figures.
    assert sorted(row.url for row in call_rows) == sorted(f"{LOG}{c.pk}/change/" for c in calls)
    assert sum(row.cost for row in call_rows) == reply.cost == Decimal("0.0060")
    assert sum(row.tokens for row in call_rows) == reply.total_tokens == 600  # the cache hit's 20 were not sent
    assert [row.cached for row in call_rows].count(True) == reply.cache_hits == 1
    failed_rows = [row for row in call_rows if row.status == ERROR]
    assert len(failed_rows) == reply.failures == 1 and failed_rows[0].error == "RateLimitError: slow down"
    # A span's row: its own calls; the root's, those made directly in it; together, the trace.
    span_rows = {spans[row.span_id]: row for row in rows if row.kind == "span"}
    assert (span_rows["retrieve"].calls, span_rows["retrieve"].cost) == (2, Decimal("0.0002"))
    assert (span_rows["rerank"].calls, span_rows["reply"].calls, span_rows["reply"].cost) == (1, 2, Decimal("0.0015"))
    assert sum(row.cost for row in span_rows.values()) == reply.cost
    assert sum(row.calls for row in span_rows.values()) == reply.requests

    html = response.content.decode()
    assert re.search(r'id="llm-trace-cost"[^>]*>\$0\.006<', html), "the trace's total cost"
    for c in calls:
        assert f'href="{LOG}{c.pk}/change/"' in html
    log_url = f"{LOG}?trace__id__exact={reply.pk}"
    assert f'href="{log_url}"' in html
    assert f'href="{change_url(traces["ticket"])}"' in html
    # The request log accepts that filter, and it selects exactly the trace's calls.
    log = staff_client.get(log_url)
    assert {o.pk for o in log.context["cl"].result_list} == {c.pk for c in calls}
    # A span is shown inside its trace, not as a trace of its own.
    assert staff_client.get(f"{TRACES}{traces['draft'].id}/change/").status_code == 302


def test_traces_are_read_only(traces, staff_client):
    pk = traces["reply"].id
    assert staff_client.get(f"{TRACES}add/").status_code == 403
    assert staff_client.post(f"{TRACES}{pk}/change/", {"name": "renamed"}).status_code == 403
    assert staff_client.post(f"{TRACES}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert LLMTrace.objects.get(pk=pk).name == "support.reply"


def test_staff_without_the_view_permission_get_403(traces, client, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", email="staff@example.com", is_staff=True)
    client.force_login(staff)
    page = f"{TRACES}{traces['reply'].id}/change/"
    assert client.get(TRACES).status_code == 403
    assert client.get(page).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_llmtrace"))
    staff = django_user_model.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    assert client.get(TRACES).status_code == 200
    response = client.get(page)
    assert response.status_code == 200
    # Without the request log's permission, the calls are listed but not linked.
    assert response.context["timeline"] and not any(row.url for row in response.context["timeline"])
    assert f"{LOG}?trace__id__exact" not in response.content.decode()


def test_a_running_trace_and_an_unknown_id(db, staff_client):
    started = datetime.now(UTC) - timedelta(seconds=5)
    with llm_trace("long.job") as job:
        LLMTrace.objects.filter(pk=job.id).update(started_at=started)
        response = staff_client.get(f"{TRACES}{job.id}/change/")
        assert response.status_code == 200
        assert [row.duration_text for row in response.context["timeline"]] == ["running"]
        assert "running" in staff_client.get(TRACES).content.decode()
    assert staff_client.get(f"{TRACES}not-a-uuid/change/").status_code == 302  # "doesn't exist", as Django says
