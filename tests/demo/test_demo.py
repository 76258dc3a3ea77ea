"""``manage.py llm_demo``: simulated traffic through the real client, request log and rollups."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse

from apps.demo.demo import (
    DEMO_DOCUMENT_PREFIX,
    DEMO_MODELS,
    DEMO_PROVIDER,
    DemoRecorder,
    Stamp,
    demo_user_email,
    plan_traffic,
)
from apps.demo.traces import BETA_USERS, PlannedSpan, PlannedTrace, plan_traces
from apps.knowledge.models import Document
from apps.llm.accounting.records import ERROR, SUCCESS, CallRecord
from apps.llm.models import LLMRequest, LLMTrace, LLMUsageByTag, LLMUsageDaily
from apps.llm.types import Usage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

FEATURES = {"support.reply", "search.rerank", "summarize", "knowledge.embed", "knowledge.answer"}


def demo(*args: str) -> str:
    out = StringIO()
    call_command("llm_demo", *args, stdout=out)
    return out.getvalue()


def small_run() -> str:
    return demo("--calls", "60", "--days", "5", "--seed", "1")


def demo_rows():
    return LLMRequest.objects.filter(provider=DEMO_PROVIDER)


def fingerprint() -> dict:
    """What must not change between two runs with the same seed (timestamps aside)."""
    rows = demo_rows()
    return {
        "by_model": Counter(rows.values_list("model", "endpoint", "status", "cached")),
        "by_feature": Counter(rows.values_list("feature", flat=True)),
        "by_user": Counter(rows.values_list("user__email", flat=True)),
        "tokens": rows.aggregate(
            p=Sum("prompt_tokens"), c=Sum("completion_tokens"), r=Sum("reasoning_tokens"), k=Sum("cached_tokens")
        ),
        "cost": rows.aggregate(Sum("cost"))["cost__sum"],
        "attempts": Counter(rows.values_list("attempts", flat=True)),
    }


def test_the_demo_fills_log_and_rollups_with_priced_simulated_traffic():
    output = small_run()
    rows = demo_rows()

    assert rows.count() >= 60  # the calls, plus the document embedding batches
    assert not LLMRequest.objects.exclude(provider=DEMO_PROVIDER).exists()  # everything is labelled
    days = set(rows.annotate(day=TruncDate("created_at")).values_list("day", flat=True))
    today = datetime.now(UTC).date()
    assert days == {today - timedelta(days=d) for d in range(5)}

    assert rows.filter(status=ERROR).exists()
    assert rows.filter(status=SUCCESS, attempts__gt=1).exists() or rows.filter(status=ERROR, attempts=2).exists()
    hits = rows.filter(cached=True)
    assert hits.exists() and hits.filter(saved_cost__gt=0).exists() and not hits.filter(cost__gt=0).exists()
    assert rows.filter(reasoning_tokens__gt=0).exists() and rows.filter(cached_tokens__gt=0).exists()
    assert rows.filter(endpoint="chat.stream", status=SUCCESS, time_to_first_token_ms__isnull=False).exists()
    assert rows.filter(endpoint="embeddings", model="openai/text-embedding-3-small").exists()

    # Real prices for real model names, although the log says "simulator" (a free provider).
    paid = rows.filter(status=SUCCESS, cached=False, model__in=DEMO_MODELS)
    assert paid.count() > 30
    for row in paid:
        assert isinstance(row.cost, Decimal) and row.cost > 0, row
        assert row.price_id is not None
    assert paid.filter(provider_cost__gt=0).exists()  # OpenRouter-style usage.cost from the catalog
    assert set(rows.values_list("model", flat=True)) >= {"anthropic/claude-sonnet-4.5", "openai/gpt-4o-mini"}

    # The rollups are the log, summed.
    # (hits spent no tokens: the rollups leave them out of the token sums)
    log = {
        (r["day"], r["model"]): (r["n"], r["cost"] or 0, r["tokens"])
        for r in rows.annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(n=Count("id"), cost=Sum("cost"), tokens=Sum("total_tokens", filter=Q(cached=False)))
    }
    rollups = {
        (r["date"], r["model"]): (r["n"], r["cost"], r["tokens"])
        for r in LLMUsageDaily.objects.filter(provider=DEMO_PROVIDER)
        .values("date", "model")
        .annotate(n=Sum("requests"), cost=Sum("cost"), tokens=Sum("total_tokens"))
    }
    assert {k: (n, c, t or 0) for k, (n, c, t) in log.items()} == rollups
    assert not LLMUsageDaily.objects.exclude(provider=DEMO_PROVIDER).exists()

    users = set(rows.exclude(user=None).values_list("user__email", flat=True))
    assert len(users) >= 3 and users <= {demo_user_email(n) for n in range(1, 6)}
    assert set(rows.values_list("feature", flat=True)) == FEATURES

    documents = Document.objects.filter(title__startswith=DEMO_DOCUMENT_PREFIX)
    assert documents.count() == 3 and all(d.status == "ready" and d.chunk_count > 0 for d in documents)
    assert rows.filter(feature="knowledge.embed", model=documents[0].embedding_model).exists()

    assert "Cache hits" in output and reverse("admin:llm_dashboard") in output
    assert "anthropic/claude-sonnet-4.5" in output

    # Again: the documents are not added twice.
    assert "already there" in demo("--calls", "0", "--days", "5")
    assert documents.count() == 3

    assert "3 documents" in demo("--reset", "--calls", "0", "--no-documents")
    assert not demo_rows().exists() and not LLMUsageDaily.objects.exists()
    assert not LLMTrace.objects.exists() and not LLMUsageByTag.objects.exists()
    assert not Document.objects.exists() and not LLMRequest.objects.exists()


def test_the_same_seed_makes_the_same_traffic_and_reset_removes_it():
    demo("--calls", "60", "--days", "5", "--seed", "1", "--no-documents")
    first = fingerprint()
    assert first["by_model"]

    output = demo("--reset", "--calls", "0", "--no-documents")
    assert "Removed earlier demo data" in output
    assert not demo_rows().exists() and not LLMUsageDaily.objects.filter(provider=DEMO_PROVIDER).exists()

    # --reset, then a new run: the cache starts cold again, so the same calls hit it.
    demo("--reset", "--calls", "60", "--days", "5", "--seed", "1", "--no-documents")
    assert fingerprint() == first


def test_the_recorder_relabels_and_backdates_but_keeps_the_cost():
    written: list[CallRecord] = []
    recorder = DemoRecorder(type("Log", (), {"record": lambda self, r: written.append(r)})())
    at = datetime(2026, 1, 2, 15, 30, tzinfo=UTC)
    recorder.stamp = Stamp(at, latency_ms=900.0, error_latency_ms=200.0, first_token_share=0.2)
    ok = CallRecord(
        endpoint="chat.stream",
        provider="openrouter",
        requested_model="openai/gpt-4o-mini",
        model="openai/gpt-4o-mini",
        status=SUCCESS,
        usage=Usage(prompt_tokens=10, total_tokens=10),
        cost=Decimal("0.0001"),
        latency_ms=1.5,
        time_to_first_token_ms=0.5,
        attempts=2,
    )
    hit = CallRecord(
        endpoint="chat",
        provider="openrouter",
        requested_model="m",
        model="m",
        status=SUCCESS,
        cached=True,
        saved_cost=Decimal("0.01"),
        cost=Decimal(0),
        latency_ms=0.3,
    )
    failed = CallRecord(
        endpoint="chat", provider="openrouter", requested_model="m", model="m", status=ERROR, attempts=2
    )
    for record in (ok, hit, failed):
        recorder.record(record)

    assert [r.provider for r in written] == [DEMO_PROVIDER] * 3
    assert [r.created_at for r in written] == [at] * 3
    assert [r.id for r in written] == [ok.id, hit.id, failed.id]  # the same records, relabelled
    assert written[0].cost == Decimal("0.0001") and written[0].latency_ms == 1100.0
    assert written[0].time_to_first_token_ms == 220.0
    assert written[1].latency_ms == 0.3  # a cache hit's speed is real
    assert written[2].latency_ms == 400.0
    assert recorder.summary.calls == 3 and recorder.summary.errors == 1 and recorder.summary.cache_hits == 1


def test_the_plan_is_seeded_and_covers_every_day():
    now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    plan = plan_traffic(200, days=7, seed=5, now=now)
    assert plan == plan_traffic(200, days=7, seed=5, now=now)
    assert plan != plan_traffic(200, days=7, seed=6, now=now)
    assert [c.at for c in plan] == sorted(c.at for c in plan) and all(c.at <= now for c in plan)
    assert {c.at.date() for c in plan} == {now.date() - timedelta(days=d) for d in range(7)}
    assert {c.feature for c in plan} == FEATURES and any(c.repeat for c in plan)
    assert 1 <= sum(1 for c in plan if c.incident) <= 10
    assert {c.kind for c in plan} == {"chat", "stream", "embedding"}
    # Run at another time, the same calls happen; only their moments move.
    later = plan_traffic(200, days=7, seed=5, now=now + timedelta(days=3, hours=11))
    assert [replace(c, at=now) for c in later] == [replace(c, at=now) for c in plan]


def own_calls(span: LLMTrace):
    """The calls a span's totals count: the whole trace's on a root, the span's own on the others."""
    return (
        LLMRequest.objects.filter(trace_id=span.pk)
        if span.parent_id is None
        else LLMRequest.objects.filter(span_id=span.pk)
    )


def test_the_demo_makes_traces_about_its_users_and_documents_with_tags(django_user_model):
    output = demo("--calls", "80", "--days", "3", "--seed", "2")
    roots = LLMTrace.objects.filter(parent=None)
    spans = LLMTrace.objects.exclude(parent=None)
    assert roots.filter(name="support.reply").exists() and roots.filter(name="knowledge.answer").exists()
    assert f"Traces      {roots.count()} (" in output

    # Subjects: a support reply is about the customer's account, a knowledge answer about a document.
    user_type = ContentType.objects.get_for_model(django_user_model)
    document_type = ContentType.objects.get_for_model(Document)
    demo_users = {
        str(pk) for pk in django_user_model.objects.filter(email__endswith="@example.com").values_list("pk", flat=True)
    }
    demo_documents = {
        str(pk) for pk in Document.objects.filter(title__startswith=DEMO_DOCUMENT_PREFIX).values_list("pk", flat=True)
    }
    for root in roots.filter(name="support.reply"):
        assert (root.subject_type_id, root.subject_id) == (user_type.pk, str(root.user_id)), root
        assert root.subject_id in demo_users
    for root in roots.filter(name="knowledge.answer"):
        assert root.subject_type_id == document_type.pk and root.subject_id in demo_documents, root
    assert len(set(roots.filter(name="knowledge.answer").values_list("subject_id", flat=True))) >= 2

    # Nested spans: support.reply > classify, draft (> retrieve on the v2 arm), review.
    children = {(p, n) for p, n in spans.values_list("parent__name", "name")}
    assert children >= {
        ("support.reply", "classify"),
        ("support.reply", "draft"),
        ("support.reply", "review"),
        ("draft", "retrieve"),
        ("knowledge.answer", "retrieve"),
        ("knowledge.answer", "answer"),
    }
    assert spans.filter(parent__parent__isnull=False).exists()  # two levels deep
    assert set(spans.values_list("trace_id", flat=True)) <= set(roots.values_list("pk", flat=True))

    # Totals equal the calls, on every span; the trace's calls happen within it, on its day.
    fields = ("requests", "failures", "cache_hits", "total_tokens", "cost", "latency_ms_sum")
    for span in LLMTrace.objects.all():
        calls = own_calls(span)
        assert calls.exists(), span
        expected = calls.aggregate(
            requests=Count("id"),
            failures=Count("id", filter=Q(status=ERROR)),
            cache_hits=Count("id", filter=Q(cached=True)),
            total_tokens=Sum("total_tokens", filter=Q(cached=False)),
            cost=Sum("cost"),
            latency_ms_sum=Sum("latency_ms"),
        )
        expected["total_tokens"] = expected["total_tokens"] or 0
        expected["cost"] = expected["cost"] or 0
        assert {f: getattr(span, f) for f in fields} == pytest.approx(expected), span
        assert span.status in ("ok", "error") and span.started_at <= span.ended_at
        for created_at in calls.values_list("created_at", flat=True):
            assert span.started_at <= created_at <= span.ended_at, span
    for span in spans.select_related("parent"):
        assert span.parent.started_at <= span.started_at and span.ended_at <= span.parent.ended_at
        assert span.started_at.date() == span.parent.started_at.date()
    assert roots.filter(failures=0, cache_hits__gt=0).exists() or spans.filter(cache_hits__gt=0).exists()

    # Errors: a failed draft ends its span and its trace with the error, and the review never runs.
    failed = roots.filter(status="error")
    assert failed.exists()
    for root in failed:
        assert root.failures >= 1 and root.error
        assert LLMTrace.objects.filter(trace_id=root.pk, status="error").count() >= 2  # the root and a step
    ok_traces = roots.filter(status="ok")
    assert ok_traces.exists()
    assert not LLMTrace.objects.filter(trace_id__in=ok_traces.values("pk"), status="error").exists()
    assert failed.filter(pk__in=spans.filter(name="draft", status="error").values("trace_id")).exists()
    assert not spans.filter(
        name="review", trace_id__in=spans.filter(name="draft", status="error").values("trace_id")
    ).exists()

    # Tags and metadata on every call of a trace, none outside.
    traced = demo_rows().filter(trace__isnull=False)
    assert not demo_rows().filter(trace__isnull=True).exclude(tags=[]).exists()
    for root in roots.filter(name="support.reply"):
        tags = set().union(*own_calls(root).values_list("tags", flat=True))
        arm = {t for t in tags if t.startswith("exp:")}
        assert len(arm) == 1 and arm <= {"exp:prompt-v1", "exp:prompt-v2"}, tags
        assert not own_calls(root).exclude(metadata__prompt=arm.pop().removeprefix("exp:prompt-")).exists()
        assert ("beta" in tags) == (root.user.email in {demo_user_email(i + 1) for i in BETA_USERS})
    assert not traced.filter(feature="knowledge.answer").exclude(tags__contains=["rag"]).exists()
    assert (
        traced.filter(tags__contains=["exp:prompt-v1"]).exists()
        and traced.filter(tags__contains=["exp:prompt-v2"]).exists()
    )
    assert traced.filter(tags__contains=["beta"]).exists()
    assert set(demo_rows().values_list("feature", flat=True)) == FEATURES  # the steps count as their feature

    # The tag rollup is the log, summed per day and tag (a call once under each of its tags).
    log = Counter()
    cost: dict = {}
    for day, tags, row_cost in demo_rows().annotate(day=TruncDate("created_at")).values_list("day", "tags", "cost"):
        for tag in set(tags):
            log[(day, tag)] += 1
            cost[(day, tag)] = cost.get((day, tag), 0) + (row_cost or 0)
    rollup = {(r.date, r.tag): (r.requests, r.cost) for r in LLMUsageByTag.objects.all()}
    assert rollup == {key: (n, cost[key]) for key, n in log.items()}
    assert {tag for _, tag in rollup} == {"exp:prompt-v1", "exp:prompt-v2", "rag", "beta"}

    spans_before = LLMTrace.objects.count()
    output = demo("--reset", "--calls", "0", "--no-documents")
    assert f"{spans_before} trace spans" in output and not LLMTrace.objects.exists()
    assert not LLMUsageByTag.objects.exists() and not LLMRequest.objects.exists()


def test_the_traced_plan_is_seeded_keeps_every_call_and_traces_every_incident():
    now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    plan = plan_traffic(200, days=7, seed=5, now=now)
    traced = plan_traces(plan, seed=5)
    assert traced == plan_traces(plan, seed=5) and traced != plan_traces(plan, seed=6)
    assert len(traced) == len(plan)
    traces = [item for item in traced if isinstance(item, PlannedTrace)]
    assert 0 < len(traces) < sum(1 for c in plan if c.feature in ("support.reply", "knowledge.answer"))
    # Each item is the planned call, or a trace whose main step is that call.
    for call, item in zip(plan, traced, strict=True):
        if isinstance(item, PlannedTrace):
            assert call in list(item.root.calls()) and item.at == call.at and item.user == call.user
            assert item.start() <= item.at and item.start().date() == item.at.date()
        else:
            assert item == call
    incidents = [c for c in plan if c.incident]
    assert incidents and all(any(c in list(t.root.calls()) for t in traces) for c in incidents)
    arms = {tag for t in traces for tag in t.tags if tag.startswith("exp:")}
    assert arms == {"exp:prompt-v1", "exp:prompt-v2"}
    v2 = next(t for t in traces if "exp:prompt-v2" in t.tags)
    draft = next(s for s in v2.root.steps if isinstance(s, PlannedSpan) and s.name == "draft")
    assert [s.name for s in draft.steps if isinstance(s, PlannedSpan)] == ["retrieve"]
