"""The trace admin: a list of traces (``llm_trace`` blocks) and, per trace, a timeline of its spans and calls.

Traces are written by the code (``apps.llm.accounting.traces``) and never edited here. The list
holds root spans only (``parent IS NULL``): its default order (newest first) and the cost order
are the partial indexes ``llm_trace_started`` and ``llm_trace_cost``, a name is filtered through
``llm_trace_name``, and pages are counted as the request log's are (bounded, then estimated).
Totals come from the rows themselves (the request-log writer keeps them), never from summing
the log. The detail page reads one trace: its spans by ``trace_id`` and its calls by the log's
``trace`` index, each bounded.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from unfold.contrib.filters.admin import (
    ChoicesDropdownFilter,
    DropdownFilter,
    RadioFilter,
    RangeNumericFilter,
    TextFilter,
)
from unfold.views import ChangeList

from apps.llm.admin.base import DashboardLinkMixin, ReadOnlyAdmin, user_of, warn_once
from apps.llm.admin.filters import DayRangeFilter, UserFilter, distinct_indexed_values
from apps.llm.admin.formatting import badge, money
from apps.llm.admin.request_log import STATUS_VARIANTS
from apps.llm.admin.subjects import load_subjects, subject_html, subject_log_url
from apps.llm.models import LLMRequest, LLMTrace

#: Most calls and spans the detail page lists (the request-log link shows every call).
MAX_TIMELINE_CALLS = 2_000
MAX_TIMELINE_SPANS = 500
#: Characters of a call's error shown in the timeline (all of it on hover and on the call's page).
ERROR_CHARS = 160

TRACE_STATUS_VARIANTS = {"ok": "success", "error": "danger", "running": ""}


def trace_log_url(trace_id: uuid.UUID) -> str:
    """The request-log changelist narrowed to one trace's calls (the log's ``trace`` index)."""
    return f"{reverse('admin:llm_llmrequest_changelist')}?{urlencode({'trace__id__exact': str(trace_id)})}"


def duration_text(start: datetime, end: datetime | None) -> str:
    if end is None:
        return "running"
    return milliseconds_text((end - start).total_seconds() * 1000)


def milliseconds_text(ms: float) -> str:
    if ms < 1000:
        return f"{ms:,.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:,.1f} s"
    return f"{ms / 60_000:,.1f} min"


# -- list filters ----------------------------------------------------------------------------------


class TraceNameFilter(TextFilter):
    """An exact name: equality on ``llm_trace_name`` (a dropdown of every name would list the spans' too)."""

    title = "name"
    parameter_name = "name"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        return queryset.filter(name=value) if value else queryset


class SubjectTypeFilter(DropdownFilter):
    """The kinds of object traces are about, read by a skip scan of the subject index."""

    title = "subject type"
    parameter_name = "subject_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        choices = []
        for value in distinct_indexed_values(LLMTrace._meta.db_table, "subject_type_id"):
            type_id = int(value)  # the column's values: content type ids
            try:
                content_type = ContentType.objects.get_for_id(type_id)
            except ContentType.DoesNotExist:
                choices.append((str(type_id), f"type #{type_id}"))
                continue
            choices.append((str(type_id), f"{content_type.app_label} | {content_type.name}"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if not value.isascii() or not value.isdigit() or len(value) > 18:
            warn_once(request, "The subject type filter was ignored: it takes a content type id.")
            return queryset
        return queryset.filter(subject_type_id=int(value))


class TraceErrorsFilter(RadioFilter):
    """Traces that raised, or made a call that failed (``failures`` counts the whole trace on its root)."""

    title = "errors"
    parameter_name = "errors"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "with errors"), ("no", "without errors")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        failed = Q(failures__gt=0) | Q(status=LLMTrace.Status.ERROR)
        if self.value() == "yes":
            return queryset.filter(failed)
        if self.value() == "no":
            return queryset.exclude(failed)
        return queryset


class TraceChangeList(ChangeList):
    """Loads the page's subjects in one query per content type, and links them for this user."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        traces = list(self.result_list)
        subjects = load_subjects((t.subject_type_id, t.subject_id) for t in traces)
        site = self.model_admin.admin_site
        for t in traces:
            obj = subjects.get((t.subject_type_id, t.subject_id)) if t.subject_type_id else None
            t.subject_html = subject_html(t.subject_type_id, t.subject_id, obj, request, site)


# -- the detail page's timeline --------------------------------------------------------------------


@dataclass
class TimelineRow:
    """One line of the timeline: a span (with its own calls' totals) or a call."""

    kind: str  # "span" or "call"
    depth: int
    label: str
    status: str
    started: datetime
    duration_ms: float | None  # None: still running
    tokens: int
    cost: Decimal | None
    calls: int = 0
    failures: int = 0
    cache_hits: int = 0
    cached: bool = False
    error: str = ""
    url: str = ""
    span_id: str = ""
    #: Position of its bar on the trace's time axis, in percent.
    left: float = 0.0
    width: float = 0.0

    @property
    def indent(self) -> int:
        return self.depth * 20

    @property
    def status_badge(self) -> str:
        if self.kind == "span":
            return badge(self.status, TRACE_STATUS_VARIANTS.get(self.status, ""))
        return badge(self.status, STATUS_VARIANTS.get(self.status, ""))

    @property
    def cost_text(self) -> str:
        return "unknown price" if self.cost is None else money(self.cost)

    @property
    def duration_text(self) -> str:
        return "running" if self.duration_ms is None else milliseconds_text(self.duration_ms)

    @property
    def short_error(self) -> str:
        return self.error if len(self.error) <= ERROR_CHARS else self.error[: ERROR_CHARS - 1].rstrip() + "…"


def _span_row(span: LLMTrace, depth: int) -> TimelineRow:
    return TimelineRow(
        kind="span",
        depth=depth,
        label=span.name,
        status=span.status,
        started=span.started_at,
        duration_ms=None if span.ended_at is None else (span.ended_at - span.started_at).total_seconds() * 1000,
        tokens=span.total_tokens,
        cost=span.cost,
        calls=span.requests,
        failures=span.failures,
        cache_hits=span.cache_hits,
        error=span.error,
        span_id=str(span.pk),
    )


def _root_row(root: LLMTrace, spans: list[LLMTrace]) -> TimelineRow:
    """The root as a span of the timeline: its own calls, as every other span shows.

    The root's totals cover the whole trace and every call is in exactly one span, so the
    root's own are its totals less the other spans'.
    """
    row = _span_row(root, 0)
    others = [span for span in spans if span.pk != root.pk]
    row.calls = max(root.requests - sum(s.requests for s in others), 0)
    row.failures = max(root.failures - sum(s.failures for s in others), 0)
    row.cache_hits = max(root.cache_hits - sum(s.cache_hits for s in others), 0)
    row.tokens = max(root.total_tokens - sum(s.total_tokens for s in others), 0)
    row.cost = root.cost - sum((s.cost for s in others), Decimal(0))
    return row


def _call_start(call: LLMRequest) -> datetime:
    # A call's row is stamped when the call ended: it began its latency earlier.
    return call.created_at - timedelta(milliseconds=call.latency_ms)


def _call_row(call: LLMRequest, depth: int, link_calls: bool) -> TimelineRow:
    error = f"{call.error_type}: {call.error_message}" if call.error_type or call.error_message else ""
    return TimelineRow(
        kind="call",
        depth=depth,
        label=f"{call.endpoint} {call.model or call.model_requested}",
        status=call.status,
        started=_call_start(call),
        duration_ms=call.latency_ms,
        tokens=0 if call.cached else call.total_tokens,  # as the trace's totals: a cache hit sent nothing
        cost=call.cost,
        calls=1,
        failures=int(call.status == LLMRequest.Status.ERROR),
        cache_hits=int(call.cached),
        cached=call.cached,
        error=error.strip(": "),
        url=reverse("admin:llm_llmrequest_change", args=[call.pk]) if link_calls else "",
        span_id=str(call.span_id or ""),
    )


def timeline(root: LLMTrace, spans: list[LLMTrace], calls: list[LLMRequest], *, link_calls: bool) -> list[TimelineRow]:
    """The trace as rows, depth first: each span followed by its child spans and calls, in time order.

    A call or span whose span is not among ``spans`` (its row was never written: the database
    was away, or past the page's bound) is placed under the root, not dropped.
    """
    known = {span.pk for span in spans} | {root.pk}
    children: dict[uuid.UUID, list[tuple[datetime, int, Any]]] = defaultdict(list)
    for order, span in enumerate(spans):
        if span.pk != root.pk:
            parent = span.parent_id if span.parent_id in known else root.pk
            children[parent].append((span.started_at, order, span))
    for order, call in enumerate(calls, start=len(spans)):
        # By when it ended (its row's time): a span begun after a call ended comes after it.
        children[call.span_id if call.span_id in known else root.pk].append((call.created_at, order, call))

    rows: list[TimelineRow] = []
    seen: set[uuid.UUID] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, LLMRequest):
            rows.append(_call_row(item, depth, link_calls))
            continue
        if item.pk in seen:  # a cycle of parents (rows written by hand): shown once
            continue
        seen.add(item.pk)
        rows.append(_span_row(item, depth) if item.pk != root.pk else _root_row(root, spans))
        # Pushed in reverse so that they pop in the order they began.
        for _, _, child in sorted(children[item.pk], key=lambda entry: entry[:2], reverse=True):
            stack.append((child, depth + 1))
    _place_bars(root, rows)
    return rows


def _place_bars(root: LLMTrace, rows: list[TimelineRow]) -> None:
    """Each row's bar on the trace's time axis: from the root's start to its end (or the last row's)."""
    start = root.started_at
    ends = [row.started + timedelta(milliseconds=row.duration_ms or 0) for row in rows]
    end = max([root.ended_at or start, *ends])
    total_ms = max((end - start).total_seconds() * 1000, 1.0)
    for row, row_end in zip(rows, ends, strict=True):
        left = max((row.started - start).total_seconds() * 1000, 0.0)
        right = max((row_end - start).total_seconds() * 1000, left)
        if row.duration_ms is None:  # running: up to now, the axis's end
            right = total_ms
        row.left = min(left / total_ms * 100, 100.0)
        row.width = max(min((right - left) / total_ms * 100, 100.0 - row.left), 0.4)


# -- the admin -------------------------------------------------------------------------------------


@admin.register(LLMTrace)
class LLMTraceAdmin(DashboardLinkMixin, ReadOnlyAdmin):
    """Traces, read-only: the list of root traces and each trace's timeline (see the module doc)."""

    change_list_template = "admin/llm/llmtrace/change_list.html"
    change_form_template = "admin/llm/llmtrace/change_form.html"
    list_display = [
        "name",
        "subject_display",
        "user_display",
        "started_at",
        "duration_display",
        "requests",
        "total_tokens",
        "cost_display",
        "errors_display",
    ]
    list_display_links = ["name"]
    # Both are indexes of the roots; any other order would sort every trace.
    sortable_by = ["started_at", "cost_display"]
    ordering = ["-started_at"]
    list_filter = [
        TraceNameFilter,
        ("started_at", DayRangeFilter),
        ("status", ChoicesDropdownFilter),
        TraceErrorsFilter,
        UserFilter,
        SubjectTypeFilter,
        ("cost", RangeNumericFilter),
    ]
    list_filter_submit = True
    actions = None
    fieldsets = [
        ("Trace", {"fields": ["name", "status_display", "user_display", "started_at", "ended_at", "duration_display"]}),
        ("Error", {"fields": ["error"]}),
    ]
    readonly_fields = ["name", "status_display", "user_display", "started_at", "ended_at", "duration_display", "error"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The root spans are the traces; a span is shown inside its trace's page.
        return super().get_queryset(request).filter(parent__isnull=True)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TraceChangeList

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list:
        # No error section on a trace that ended well.
        return self.fieldsets if obj is None or obj.error else self.fieldsets[:1]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        # Checked before anything of the trace is read (Django checks again, on the object).
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        trace = self.get_object(request, unquote(object_id))
        context = self.trace_context(request, trace) if trace is not None else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **context})

    def trace_context(self, request: HttpRequest, trace: LLMTrace) -> dict[str, Any]:
        """What the detail page shows beside the fields: totals, links, the timeline."""
        spans = list(LLMTrace.objects.filter(trace_id=trace.trace_id).order_by("started_at")[: MAX_TIMELINE_SPANS + 1])
        calls = list(
            LLMRequest.objects.filter(trace_id=trace.pk)
            .order_by("created_at", "id")
            .only(
                "id",
                "created_at",
                "endpoint",
                "model",
                "model_requested",
                "status",
                "error_type",
                "error_message",
                "total_tokens",
                "cost",
                "latency_ms",
                "cached",
                "span_id",
            )[: MAX_TIMELINE_CALLS + 1]
        )
        log_admin = self.admin_site._registry.get(LLMRequest)
        can_view_calls = bool(log_admin and log_admin.has_view_permission(request))
        subject = load_subjects([(trace.subject_type_id, trace.subject_id)]).get(
            (trace.subject_type_id or 0, trace.subject_id or "")
        )
        return {
            "trace": trace,
            "timeline": timeline(
                trace, spans[:MAX_TIMELINE_SPANS], calls[:MAX_TIMELINE_CALLS], link_calls=can_view_calls
            ),
            "timeline_truncated": len(calls) > MAX_TIMELINE_CALLS or len(spans) > MAX_TIMELINE_SPANS,
            "timeline_max_calls": f"{MAX_TIMELINE_CALLS:,}",
            "trace_cost": money(trace.cost),
            "trace_latency": milliseconds_text(trace.latency_ms_sum),
            "trace_subject": subject_html(trace.subject_type_id, trace.subject_id, subject, request, self.admin_site),
            "trace_subject_log_url": subject_log_url(trace.subject_type_id, trace.subject_id)
            if can_view_calls and trace.subject_type_id and trace.subject_id
            else "",
            "trace_log_url": trace_log_url(trace.pk) if can_view_calls else "",
        }

    @admin.display(description="subject")
    def subject_display(self, obj: LLMTrace) -> str:
        # Set by TraceChangeList for the page (one query per content type, linked for this user).
        return getattr(obj, "subject_html", None) or ("—" if obj.subject_type_id is None else str(obj.subject_id))

    @admin.display(description="user")
    def user_display(self, obj: LLMTrace) -> str:
        return user_of(obj)

    @admin.display(description="duration")
    def duration_display(self, obj: LLMTrace) -> str:
        return duration_text(obj.started_at, obj.ended_at)

    @admin.display(description="cost", ordering="cost")
    def cost_display(self, obj: LLMTrace) -> str:
        return money(obj.cost)

    @admin.display(description="status")
    def status_display(self, obj: LLMTrace) -> str:
        return badge(obj.status, TRACE_STATUS_VARIANTS.get(obj.status, ""))

    @admin.display(description="errors")
    def errors_display(self, obj: LLMTrace) -> str:
        failed = (
            format_html(' <span style="color:#b91c1c">{} failed call{}</span>', obj.failures, "s" * (obj.failures != 1))
            if obj.failures
            else ""
        )
        if obj.status == LLMTrace.Status.ERROR:
            return format_html('<span title="{}">{}</span>{}', obj.error, badge("error", "danger"), failed)
        return failed or "—"
