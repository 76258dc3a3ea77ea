"""Attribution beyond user and feature: tags, metadata, subjects and traces, from the context to the log."""

from __future__ import annotations

import contextvars
import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum

from apps.llm import llm_context, llm_trace, usage_for
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.models import LLMRequest, LLMTrace
from apps.llm.testing.simulator import CHAT


@pytest.fixture
def client(make_client, sim):
    return make_client(sim, key="sk-test-attribution-0000", recorders=[SyncDatabaseRecorder()])


def ask(client, text: str, **kwargs):
    return client.chat_completion([{"role": "user", "content": text}], "gpt-4o-mini", cache=False, **kwargs)


@pytest.mark.django_db
def test_tags_and_metadata_merge_from_nested_contexts_and_the_call(client):
    with llm_context(feature="support", tags=["beta"], metadata={"arm": "A", "ticket": 1}):
        ask(client, "one")
        with llm_context(tags=["escalated", "beta"], metadata={"ticket": 2}):
            ask(client, "two", tags=["retry"], metadata={"attempt": 2})
    ask(client, "three")
    rows = list(LLMRequest.objects.order_by("created_at").values_list("feature", "tags", "metadata"))
    assert rows == [
        ("support", ["beta"], {"arm": "A", "ticket": 1}),
        ("support", ["beta", "escalated", "retry"], {"arm": "A", "ticket": 2, "attempt": 2}),
        ("", [], None),
    ]
    assert LLMRequest.objects.filter(tags__contains=["escalated"]).count() == 1
    assert LLMRequest.objects.filter(metadata__arm="A").count() == 2


def test_bad_tags_are_refused_with_the_reason(client):
    with pytest.raises(TypeError, match="list of strings"), llm_context(tags="beta"):
        pass
    with pytest.raises(ValueError, match="at most 100 characters"):
        ask(client, "x", tags=["x" * 101])


@pytest.mark.django_db
def test_usage_for_an_object_and_a_queryset_equals_the_log(client, sim, django_user_model):
    alice, bob, carol = (
        django_user_model.objects.create_user(username=n, email=f"{n}@example.com") for n in ("alice", "bob", "carol")
    )
    with llm_context(subject=alice):
        ask(client, "a1")
        ask(client, "a2")
    with llm_context(subject=bob):
        ask(client, "b1")
        sim.fail_next(CHAT, 3, status=500)
        with pytest.raises(Exception):  # noqa: B017 (the failure itself is another test's subject)
            ask(client, "b2")
    ask(client, "nobody")
    for subject, ids in ((alice, [alice.pk]), (bob, [bob.pk])):
        rows = LLMRequest.objects.filter(subject_id__in=[str(i) for i in ids])
        stats = usage_for(subject)
        assert stats.total_requests == rows.count()
        assert stats.total_cost == rows.aggregate(c=Sum("cost"))["c"].normalize()
        assert stats.total_tokens == rows.aggregate(t=Sum("total_tokens"))["t"]
    both = usage_for(get_user_model().objects.filter(username__in=["alice", "bob", "carol"]))
    assert (both.total_requests, both.errors) == (4, 1)
    assert both.total_cost == usage_for(alice).total_cost + usage_for(bob).total_cost
    assert usage_for(carol).total_requests == 0 and usage_for(carol).total_cost == Decimal(0)


@pytest.mark.django_db(transaction=True)
def test_a_trace_holds_its_calls_across_threads_with_spans_and_totals(client, django_user_model, price_table):
    ticket = django_user_model.objects.create_user(username="ticket-owner", email="t@example.com")
    with llm_trace("support.reply", subject=ticket, tags=["support"]) as trace:
        ask(client, "classify")
        with llm_trace("draft") as draft:
            worker = threading.Thread(target=contextvars.copy_context().run, args=(ask, client, "in a thread"))
            worker.start()
            worker.join()
            ask(client, "draft it")
    ask(client, "outside")

    root, span = LLMTrace.objects.get(pk=trace.id), LLMTrace.objects.get(pk=draft.id)
    assert (root.parent_id, root.trace_id, span.parent_id, span.trace_id) == (None, trace.id, trace.id, trace.id)
    assert root.status == span.status == "ok" and root.ended_at and root.subject == ticket
    calls = LLMRequest.objects.filter(trace=root)
    assert calls.count() == 3
    assert sorted(calls.values_list("span_id", flat=True)) == sorted([trace.id, draft.id, draft.id])
    assert all(row.tags == ["support"] and row.subject == ticket for row in calls)
    assert (root.requests, span.requests) == (3, 2)
    assert root.cost == calls.aggregate(c=Sum("cost"))["c"] > 0 and span.cost < root.cost
    assert root.total_tokens == calls.aggregate(t=Sum("total_tokens"))["t"]
    assert LLMRequest.objects.get(trace__isnull=True).span_id is None


@pytest.mark.django_db(transaction=True)
def test_a_trace_that_raises_is_closed_as_an_error(client):
    with pytest.raises(RuntimeError), llm_trace("import") as trace:
        ask(client, "before the crash")
        raise RuntimeError("disk full")
    row = LLMTrace.objects.get(pk=trace.id)
    assert (row.status, row.error, row.requests) == ("error", "RuntimeError: disk full", 1)
