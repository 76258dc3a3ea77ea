"""The cost dashboard page and its CSV exports (the figures themselves: ``apps.llm.dashboard``).

This module only presents: it formats the ``Dashboard`` dataclasses, turns every figure and
row into a link to the request log filtered the same way, and hands the charts to Chart.js
(shipped in Unfold's static files) as JSON through ``json_script``.
"""

from __future__ import annotations

import csv
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, get_resolver, get_script_prefix, get_urlconf, reverse
from django.utils.translation import get_language

from apps.llm.accounting.records import SUMMARY_COLUMNS, LoggedCall
from apps.llm.admin.formatting import money
from apps.llm.dashboard import (
    OTHER,
    PERIOD_LABELS,
    TOP_ROWS,
    BudgetUsage,
    CostAccuracy,
    DailySeries,
    Dashboard,
    DashboardFilters,
    Drift,
    Figure,
    RawTable,
    TraceRow,
    UsageRow,
    build_dashboard,
    not_narrowed,
    rollup_today,
)
from apps.llm.dashboard.filters import QueryReading
from apps.llm.models import LLMRequest
from apps.llm.money import percent, round_significant
from apps.llm.pricing.sheets import plain_decimal

EXPORTS = ("headline", "daily", "models", "users", "features", "tags", "traces", "accuracy", "expensive", "failures")
#: Why a section shows no figures under the filters (``Dashboard.not_narrowed``).
NOT_NARROWED = {
    "tag": "Not available with a tag filter: tags are rolled up per day only, without models, users or features.",
    "dimensions": "Not available with a provider, model, user or feature filter: tags are rolled up per day only.",
    "traces": "Not narrowed by the filters (a trace spans models, features and tags): clear them to see the "
    "period's most expensive traces.",
}
PALETTE = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#db2777", "#ca8a04", "#64748b"]
OTHER_COLOUR = "#94a3b8"


# -- links ------------------------------------------------------------------------------------------

#: Paths already reversed, per URL resolver (a new one after ``clear_url_caches``, e.g. another URLconf).
_PATHS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str | None], str]] = weakref.WeakKeyDictionary()


def _path(name: str) -> str:
    """``reverse(name)`` of a view without arguments, remembered: a 90-day page links ~200 times to
    the request log and the dashboard, and each ``reverse`` costs about 0.1 ms."""
    paths = _PATHS.setdefault(get_resolver(get_urlconf()), {})
    key = (name, get_script_prefix(), get_language())
    if key not in paths:
        paths[key] = reverse(name)
    return paths[key]


def request_log_url(filters: DashboardFilters, **extra: str) -> str:
    """The request-log changelist showing exactly the calls behind a figure (see ``apps.llm.admin.filters``)."""
    params = {
        "created_at_from": filters.start.isoformat(),
        "created_at_to": filters.end.isoformat(),
        **filters.dimension_params(),
        **extra,
    }
    if tag := params.pop("tag", ""):
        # The request log has no tag filter but a search term for it (apps.llm.admin.search).
        params["q"] = f'tag:"{tag}"'
    return f"{_path('admin:llm_llmrequest_changelist')}?{urlencode(params)}"


def trace_url(trace: TraceRow) -> str:
    """The trace's admin page; until the trace admin is registered, its calls in the request log."""
    try:
        return reverse("admin:llm_llmtrace_change", args=[trace.id])
    except NoReverseMatch:
        return f"{reverse('admin:llm_llmrequest_changelist')}?{urlencode({'trace__id__exact': str(trace.id)})}"


def dashboard_url(filters: DashboardFilters, **extra: str) -> str:
    return f"{_path('admin:llm_dashboard')}?{urlencode({**filters.query_params(), **extra})}"


def call_url(call: LoggedCall) -> str:
    return reverse("admin:llm_llmrequest_change", args=[call.id])


#: Which calls each headline figure counts, as extra request-log filters.
FIGURE_LOG_FILTERS: dict[str, dict[str, str]] = {
    "cache_hit_rate": {"cached__exact": "1"},
    "saved": {"cached__exact": "1"},
    "error_rate": {"status__exact": LLMRequest.Status.ERROR},
    "refused": {"status__exact": LLMRequest.Status.REFUSED},
}
#: Which calls each cost-accuracy count links to (the others have no request-log filter).
PRICING_LOG_FILTERS: dict[str, dict[str, str]] = {
    "refused": {"status__exact": LLMRequest.Status.REFUSED},
    "failed": {"status__exact": LLMRequest.Status.ERROR},
}


# -- formatting ---------------------------------------------------------------------------------------


def format_value(value: Decimal | int | float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "money":
        # Figure.value is typed for every kind; a money figure holds a Decimal (or a 0).
        return money(Decimal(value))
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if kind == "ms":
        return f"{value:,.0f} ms"
    return f"{value:,}"


def format_change(figure: Figure) -> tuple[str, str]:
    """The change as text, and whether it is good, bad or neutral news."""
    change = figure.change
    if change is None:
        return ("new" if figure.value and not figure.previous else "—"), "neutral"
    text = f"{change * 100:+.1f} pts" if figure.kind == "rate" else f"{change * 100:+.1f}%"
    if round(change * 100, 1) == 0 or figure.lower_is_better is None:
        return text, "neutral"
    return text, "good" if (change < 0) == figure.lower_is_better else "bad"


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


# -- charts -----------------------------------------------------------------------------------------------


def _colour(index: int, label: str) -> str:
    return OTHER_COLOUR if label == OTHER else PALETTE[index % len(PALETTE)]


def _day_links(filters: DashboardFilters, days: Sequence, **extra: str) -> list[str]:
    return [request_log_url(filters.narrowed(start=d, end=d), **extra) for d in days]


def charts(data: Dashboard) -> dict[str, dict[str, Any]]:
    """Chart.js configurations; ``format`` and ``links`` are read by static/llm/dashboard.js."""
    daily: DailySeries = data.daily
    filters = data.filters
    day_links = _day_links(filters, daily.days)  # the same for the four daily charts
    labels = [d.isoformat() for d in daily.days]
    stacked = {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}}
    return {
        "spend": {
            "type": "bar",
            "format": "money",
            "links": day_links,
            "data": {
                "labels": labels,
                "datasets": [
                    {"label": label, "data": [float(v) for v in values], "backgroundColor": _colour(i, label)}
                    for i, (label, _, values) in enumerate(daily.cost_by_model)
                ],
            },
            "options": {"scales": stacked},
        },
        "tokens": {
            "type": "bar",
            "format": "count",
            "links": day_links,
            "data": {
                "labels": labels,
                "datasets": [
                    {"label": "Input (uncached)", "data": daily.input_tokens, "backgroundColor": PALETTE[0]},
                    {"label": "Cached input", "data": daily.cached_tokens, "backgroundColor": PALETTE[4]},
                    {"label": "Output", "data": daily.output_tokens, "backgroundColor": PALETTE[2]},
                ],
            },
            "options": {"scales": stacked},
        },
        "requests": {
            "type": "bar",
            "format": "count",
            "links": day_links,
            "data": {
                "labels": labels,
                "datasets": [
                    {"label": "Requests", "data": daily.requests, "backgroundColor": PALETTE[0], "order": 2},
                    {
                        "label": "Errors",
                        "data": daily.failures,
                        "type": "line",
                        "borderColor": "#dc2626",
                        "backgroundColor": "#dc2626",
                        "order": 1,
                    },
                    {
                        "label": "Refused",
                        "data": daily.refusals,
                        "type": "line",
                        "borderColor": PALETTE[6],
                        "backgroundColor": PALETTE[6],
                        "borderDash": [4, 3],
                        "order": 0,
                    },
                ],
            },
            "options": {"scales": {"y": {"beginAtZero": True}}},
        },
        "latency": {
            "type": "line",
            "format": "ms",
            "links": day_links,
            "data": {
                "labels": labels,
                "datasets": [
                    {
                        "label": "p50",
                        "data": [_float(v) for v in daily.p50_ms],
                        "borderColor": PALETTE[0],
                        "backgroundColor": PALETTE[0],
                        "spanGaps": True,
                    },
                    {
                        "label": "p95",
                        "data": [_float(v) for v in daily.p95_ms],
                        "borderColor": PALETTE[3],
                        "backgroundColor": PALETTE[3],
                        "spanGaps": True,
                    },
                ],
            },
            "options": {"scales": {"y": {"beginAtZero": True}}},
        },
        "features": _share_chart(data.features, data.current.cost),
        "users": _share_chart(data.users, data.current.cost),
    }


def _share_chart(rows: list[UsageRow], total: Decimal) -> dict[str, Any]:
    """Spend per row (horizontal bars), with whatever the top rows leave out as "Other"."""
    labels, values, links = (
        [r.label for r in rows],
        [float(r.cost) for r in rows],
        [dashboard_url(r.filters) for r in rows],
    )
    rest = total - sum((r.cost for r in rows), Decimal(0))
    if rest > 0:
        labels.append(OTHER)
        values.append(float(rest))
        links.append("")
    return {
        "type": "bar",
        "format": "money",
        "links": links,
        "data": {
            "labels": labels,
            "datasets": [
                {
                    "label": "Spend",
                    "data": values,
                    "backgroundColor": [_colour(i, label) for i, label in enumerate(labels)],
                }
            ],
        },
        "options": {"indexAxis": "y", "plugins": {"legend": {"display": False}}},
    }


# -- page context ------------------------------------------------------------------------------------------


def _figures(data: Dashboard) -> list[dict[str, Any]]:
    figures = []
    for figure in data.figures:
        change, tone = format_change(figure)
        figures.append(
            {
                "key": figure.key,
                "label": figure.label,
                "value": format_value(figure.value, figure.kind),
                "previous": format_value(figure.previous, figure.kind),
                "change": change,
                "tone": tone,
                "link": request_log_url(data.filters, **FIGURE_LOG_FILTERS.get(figure.key, {})),
            }
        )
    return figures


def _budgets(budgets: list[BudgetUsage]) -> list[dict[str, Any]]:
    """The budgets at a limit, as the budgets card lists them."""
    return [
        {
            "name": b.name,
            "status": b.status,
            "period": b.period,
            "spent": money(b.spent),
            "limit": money(b.hard_limit if b.status == "hard" else b.soft_limit),
        }
        for b in budgets
        if b.status != "ok"
    ]


def _drift(drift: Drift, filters: DashboardFilters) -> dict[str, Any]:
    return {
        "label": drift.label,
        "calls": f"{drift.calls:,}",
        "ours": money(drift.ours),
        "theirs": money(drift.theirs),
        "amount": money(drift.amount, signed=True),
        "share": percent(drift.share, signed=True),
        "differs": drift.amount != 0,
        "tone": "neutral" if not drift.amount else "bad",
        # The calls whose two costs differ, in the same period and filters (narrowed to the model).
        "log_url": request_log_url(drift.filters or filters, drift="1"),
    }


def _accuracy(accuracy: CostAccuracy, filters: DashboardFilters) -> dict[str, Any]:
    return {
        "requests": f"{accuracy.requests:,}",
        "pricing": [
            {
                "key": p.key,
                "label": p.label,
                "calls": f"{p.calls:,}",
                "share": percent(p.share, places=1),
                "width": f"{(p.share or 0) * 100:.1f}",
                "log_url": request_log_url(filters, **PRICING_LOG_FILTERS[p.key])
                if p.key in PRICING_LOG_FILTERS
                else "",
            }
            for p in accuracy.pricing
        ],
        "drifts": [_drift(d, filters) for d in accuracy.drifts],
        "total": _drift(accuracy.total, filters) if accuracy.total.calls else None,
    }


def _usage_rows(rows: list[UsageRow]) -> list[dict[str, Any]]:
    return [
        {
            "label": r.label,
            "drill_url": dashboard_url(r.filters),
            "log_url": request_log_url(r.filters),
            "requests": f"{r.requests:,}",
            "failures": f"{r.failures:,}",
            "tokens": f"{r.tokens:,}",
            "cost": money(r.cost),
            "avg_cost": money(r.avg_cost),
            "saved": money(r.saved_cost),
        }
        for r in rows
    ]


def _traces(traces: list[TraceRow], users: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {
            "url": trace_url(t),
            "name": t.name,
            "status": t.status,
            "started_at": t.started_at,
            "user": users.get(t.user_id, f"#{t.user_id}") if t.user_id else "—",
            "requests": f"{t.requests:,}",
            "failures": f"{t.failures:,}",
            "tokens": f"{t.total_tokens:,}",
            "cost": money(t.cost),
        }
        for t in traces
    ]


def _not_narrowed(data: Dashboard) -> dict[str, str]:
    """Per section the filters cannot narrow, what the page says in its place."""
    reason = NOT_NARROWED["tag"]
    notes = {section: reason for section in ("models", "users", "features", "drifts") if section in data.not_narrowed}
    if "tags" in data.not_narrowed:
        notes["tags"] = NOT_NARROWED["dimensions"]
    if "traces" in data.not_narrowed:
        notes["traces"] = NOT_NARROWED["traces"]
    return notes


def _calls(table: RawTable | None, users: dict[int, str]) -> dict[str, Any] | None:
    if table is None:
        return None
    return {
        "timed_out": table.timed_out,
        "rows": [
            {
                "url": call_url(c),
                "created_at": c.created_at,
                "provider": c.provider,
                "model": c.model,
                "feature": c.feature or "—",
                "user": users.get(c.user_id, f"#{c.user_id}") if c.user_id else "—",
                "tokens": f"{c.total_tokens:,}",
                "cost": money(c.cost),
                "latency": f"{c.latency_ms:,.0f} ms",
                "error": f"{c.error_type}: {c.error_message[:200]}" if c.error_type else c.error_message[:200],
            }
            for c in table.rows
        ],
    }


def context(data: Dashboard, *, raw_log: bool) -> dict[str, Any]:
    filters, options = data.filters, data.options
    users = {int(v): label for v, label in options.users if v.isdigit()}
    return {
        "data": data,
        "period_label": f"{filters.start:%d %b %Y} – {filters.end:%d %b %Y}",
        "previous_label": f"{data.previous_filters.start:%d %b %Y} – {data.previous_filters.end:%d %b %Y}",
        "periods": list(PERIOD_LABELS.items()),
        "form": {
            "period": filters.period,
            "start": filters.start.isoformat(),
            "end": filters.end.isoformat(),
            "provider": filters.provider,
            "model": filters.model,
            "user": filters.user_param,
            "feature": filters.feature_param,
            "tag": filters.tag,
        },
        "options": {
            "providers": _with_selected(options.providers, filters.provider),
            "models": _with_selected(sorted({m for _, m in options.models}), filters.model),
            "users": _with_selected_pairs(options.users, filters.user_param),
            "features": _with_selected_pairs(
                [(f or "-", f or "(no feature)") for f in options.features], filters.feature_param
            ),
            "tags": _with_selected(options.tags, filters.tag),
        },
        "figures": _figures(data),
        "budgets": data.budgets,
        "budgets_reached": _budgets(data.budgets_reached),
        "accuracy": _accuracy(data.accuracy, filters),
        "charts": charts(data),
        "models": _usage_rows(data.models[:TOP_ROWS]),
        "more_models": max(len(data.models) - TOP_ROWS, 0),
        "users": _usage_rows(data.users),
        "features": _usage_rows(data.features),
        "tags": _usage_rows(data.tags),
        "traces": _traces(data.traces, users),
        "not_narrowed": _not_narrowed(data),
        "expensive": _calls(data.expensive, users),
        "failures": _calls(data.failures, users),
        "raw_log": raw_log,
        "log_url": request_log_url(filters),
        "exports": [
            (name, dashboard_url(filters, export=name))
            for name in EXPORTS
            if raw_log or name not in ("expensive", "failures")
        ],
        "reset_url": reverse("admin:llm_dashboard"),
    }


def _with_selected(values: Iterable[str], selected: str) -> list[str]:
    values = list(values)
    return values if not selected or selected in values else [selected, *values]


def _with_selected_pairs(pairs: Iterable[tuple[str, str]], selected: str) -> list[tuple[str, str]]:
    pairs = list(pairs)
    return pairs if not selected or selected in {v for v, _ in pairs} else [(selected, selected), *pairs]


# -- CSV -------------------------------------------------------------------------------------------------------


def _num(value: Decimal | float | int | None) -> str:
    """A figure as CSV text: amounts exact (``plain_decimal``: no trailing zeros, never rounded)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _ratio(value: Decimal | None) -> str:
    """A quotient (an average, a share): no exact decimal exists, so ``MAX_DIGITS`` significant digits."""
    return "" if value is None else plain_decimal(round_significant(value))


def _cell(value: Any) -> str:
    """A value of a logged call as CSV text (strings as they are, ids and times in ISO form)."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return _num(value)


def export_rows(data: Dashboard, section: str) -> list[list[str]]:
    """The rows of one CSV export, header first: exactly the figures the page shows."""
    if section == "headline":
        return [
            ["metric", "value", "previous", "change"],
            *[[f.key, _num(f.value), _num(f.previous), _num(f.change)] for f in data.figures],
        ]
    if section == "daily":
        d = data.daily
        series = data.daily.cost_by_model
        header = [
            "date",
            "requests",
            "errors",
            "refused",
            "spend_usd",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "p50_ms",
            "p95_ms",
            *[f"spend_usd:{label}" for label, _, _ in series],
        ]
        return [
            header,
            *[
                [
                    day.isoformat(),
                    _num(d.requests[i]),
                    _num(d.failures[i]),
                    _num(d.refusals[i]),
                    _num(d.cost[i]),
                    _num(d.input_tokens[i]),
                    _num(d.cached_tokens[i]),
                    _num(d.output_tokens[i]),
                    _num(d.p50_ms[i]),
                    _num(d.p95_ms[i]),
                    *[_num(values[i]) for _, _, values in series],
                ]
                for i, day in enumerate(d.days)
            ],
        ]
    if section == "traces":
        return [
            [
                "trace_id",
                "name",
                "status",
                "started_at",
                "user_id",
                "requests",
                "errors",
                "cache_hits",
                "tokens",
                "cost_usd",
            ],
            *[
                [
                    str(t.id),
                    t.name,
                    t.status,
                    t.started_at.isoformat(),
                    _num(t.user_id),
                    _num(t.requests),
                    _num(t.failures),
                    _num(t.cache_hits),
                    _num(t.total_tokens),
                    _num(t.cost),
                ]
                for t in data.traces
            ],
        ]
    if section in ("models", "users", "features", "tags"):
        key_columns = {
            "models": ["provider", "model"],
            "users": ["user_id", "user"],
            "features": ["feature"],
            "tags": ["tag"],
        }[section]
        rows = [
            [
                *key_columns,
                "requests",
                "errors",
                "refused",
                "cache_hits",
                "tokens",
                "spend_usd",
                "avg_cost_usd",
                "saved_usd",
            ]
        ]
        for r in getattr(data, section):
            keys = {
                "models": [r.filters.provider, r.filters.model],
                "users": [r.filters.user_param, r.label],
                "features": [r.filters.feature or ""],
                "tags": [r.filters.tag],
            }[section]
            rows.append(
                [
                    *keys,
                    _num(r.requests),
                    _num(r.failures),
                    _num(r.refusals),
                    _num(r.cache_hits),
                    _num(r.tokens),
                    _num(r.cost),
                    _ratio(r.avg_cost),
                    _num(r.saved_cost),
                ]
            )
        return rows
    if section == "accuracy":
        return accuracy_rows(data.accuracy)
    if section in ("expensive", "failures"):
        table = getattr(data, section)
        header = [f"{name}_usd" if name == "cost" else name for name in SUMMARY_COLUMNS]
        return [header, *[[_cell(getattr(c, name)) for name in SUMMARY_COLUMNS] for c in (table.rows if table else [])]]
    raise ValueError(section)


ACCURACY_HEADER = [
    "section",
    "name",
    "provider",
    "model",
    "calls",
    "share",
    "our_cost_usd",
    "provider_cost_usd",
    "drift_usd",
    "drift_share",
]


def accuracy_rows(accuracy: CostAccuracy) -> list[list[str]]:
    """The cost-accuracy panel: one ``pricing`` row per category, then one ``drift`` row per model and the total.

    Shares are fractions (0.25 = 25%) of ``MAX_DIGITS`` significant digits; amounts are exact.
    """
    rows = [ACCURACY_HEADER]
    for p in accuracy.pricing:
        share = None if p.share is None else Decimal(p.calls) / Decimal(accuracy.requests)
        rows.append(["pricing", p.key, "", "", _num(p.calls), _ratio(share), "", "", "", ""])
    for d in [*accuracy.drifts, accuracy.total]:
        provider, model = (d.filters.provider, d.filters.model) if d.filters else ("", "")
        rows.append(
            [
                "drift",
                d.label if d.filters else "total",
                provider,
                model,
                _num(d.calls),
                "",
                _num(d.ours),
                _num(d.theirs),
                _num(d.amount),
                _ratio(d.share),
            ]
        )
    return rows


def csv_response(data: Dashboard, section: str) -> HttpResponse:
    f = data.filters
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="llm-{section}-{f.start}-{f.end}.csv"'
    csv.writer(response).writerows(export_rows(data, section))
    return response


# -- the view --------------------------------------------------------------------------------------------------


def dashboard_response(request: HttpRequest, *, admin_site: AdminSite, raw_log: bool) -> HttpResponse:
    """The page (or ``?export=<section>`` as CSV); permissions are checked by the caller.

    Filter values the dashboard cannot use are ignored with a message on the page; an export
    asked with such values is refused (400) rather than computed for other filters than asked
    (days moved into range are no reason: the figures are the same).
    """
    reading = QueryReading.of(request.GET, today=rollup_today())
    filters = reading.filters
    export = request.GET.get("export", "")
    raw_sections = ("expensive", "failures")
    if (export and export not in EXPORTS) or (export in raw_sections and not raw_log):
        return HttpResponse(f"Unknown export {export[:40]!r}", status=400, content_type="text/plain")
    if export and reading.ignored:
        return HttpResponse("\n".join(reading.ignored), status=400, content_type="text/plain; charset=utf-8")
    if export and export in not_narrowed(filters):
        # An empty file would read as "no calls": say why there is none.
        return HttpResponse(
            f"The {export} export cannot be narrowed to these filters: tags are rolled up per day only.",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    for message in reading.messages:
        messages.warning(request, message)
    # An export of the rollup sections needs no raw-log query.
    data = build_dashboard(filters, raw_log=raw_log and (not export or export in raw_sections))
    if export:
        return csv_response(data, export)
    page = {**admin_site.each_context(request), "title": "LLM cost and usage", **context(data, raw_log=raw_log)}
    return TemplateResponse(request, "admin/llm/dashboard.html", page)
