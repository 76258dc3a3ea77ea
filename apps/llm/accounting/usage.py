"""Usage statistics from the daily rollups (never from the raw request log): the smallest that answers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone

from apps.llm.models import SUMMARY_COUNTERS
from apps.llm.types import UsageStats


def usage_stats(
    *,
    days: int = 30,
    start: date | None = None,
    end: date | None = None,
    user: Any = None,
    feature: str | None = None,
    model: str | None = None,
    provider: str | None = None,
) -> UsageStats:
    """Totals for ``start``..``end`` (inclusive; default: the last ``days`` days up to today)."""
    from apps.llm.accounting.rollups import rollup_for

    end = end or timezone.localdate()
    start = start or end - timedelta(days=days - 1)
    narrowed = {
        "user_id": None if user is None else getattr(user, "pk", user),
        "feature": feature,
        "model": model,
        "provider": provider,
    }
    narrowed = {column: value for column, value in narrowed.items() if value is not None}
    # models_used needs the model column. Which rollup has it is known only at run time, hence Any.
    rows: QuerySet[Any] = rollup_for({"model", *narrowed}).model._default_manager.filter(
        date__gte=start, date__lte=end, **narrowed
    )
    totals = rows.aggregate(**{name: Sum(name) for name in SUMMARY_COUNTERS})
    return _stats(totals, rows.order_by().values_list("model", flat=True).distinct())


def _stats(totals: dict[str, Any], models: Iterable[str]) -> UsageStats:
    """``UsageStats`` of aggregated ``SUMMARY_COUNTERS`` (a sum over no rows is None: nothing) and the models seen."""
    return UsageStats.of_counts(
        requests=totals["requests"] or 0,
        failures=totals["failures"] or 0,
        refusals=totals["refusals"] or 0,
        cache_hits=totals["cache_hits"] or 0,
        total_tokens=totals["total_tokens"] or 0,
        total_cost=(totals["cost"] or Decimal(0)).normalize(),
        saved_cost=(totals["saved_cost"] or Decimal(0)).normalize(),
        models_used=sorted(models),
    )


def usage_for(subject: Any) -> UsageStats:
    """Every logged call about ``subject`` (a model instance, or a queryset of them): counts, tokens, cost.

    Read from the request log by the subject index (``llm_context(subject=...)`` sets it), so
    it covers the log's retention (``LLM_RETENTION_DAYS``), not the rollups' longer history.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.db.models import CharField, Count, Q
    from django.db.models.functions import Cast

    from apps.llm.models import LLMRequest

    if isinstance(subject, QuerySet):
        content_type = ContentType.objects.get_for_model(subject.model)
        # A subquery, compared as text: the log keeps any primary key (int, UUID, string) as a string.
        ids = subject.order_by().annotate(llm_subject_id=Cast("pk", output_field=CharField())).values("llm_subject_id")
        calls = LLMRequest.objects.filter(subject_type=content_type, subject_id__in=ids)
    else:
        if getattr(subject, "pk", None) is None:
            raise ValueError(f"usage_for() needs a saved model instance or a queryset, not {subject!r}")
        content_type = ContentType.objects.get_for_model(subject)
        calls = LLMRequest.objects.filter(subject_type=content_type, subject_id=str(subject.pk))
    totals = calls.aggregate(
        requests=Count("id"),
        failures=Count("id", filter=Q(status=LLMRequest.Status.ERROR)),
        refusals=Count("id", filter=Q(status=LLMRequest.Status.REFUSED)),
        cache_hits=Count("id", filter=Q(cached=True)),
        total_tokens=Sum("total_tokens", filter=Q(cached=False)),
        cost=Sum("cost"),
        saved_cost=Sum("saved_cost"),
    )
    return _stats(totals, (m for m in calls.order_by().values_list("model", flat=True).distinct() if m))
