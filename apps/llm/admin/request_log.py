"""Admin pages of LLM usage: the request log, budgets, daily rollups and the cost dashboard.

The request log can hold tens of millions of rows, so nothing here scans it: the list is
ordered by the created_at index, counted from the planner's estimate instead of COUNT(*),
filtered by indexed columns whose choices come from index skip-scans or the small rollups,
searched by ``key:value`` terms each routed to an index (``search``), exported as a streamed,
bounded CSV (``export``), and its date drill-down is derived from MIN/MAX instead of SELECT DISTINCT.
"""

from __future__ import annotations

import calendar
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from unfold.contrib.filters.admin import (
    BooleanRadioFilter,
    ChoicesDropdownFilter,
)
from unfold.views import ChangeList

from apps.llm.accounting.records import COLUMN_GROUPS
from apps.llm.admin.base import (
    DashboardLinkMixin,
    ReadOnlyAdmin,
    querystring_problems,
    user_of,
)
from apps.llm.admin.export import MAX_EXPORT_ROWS, TEXT_PERMISSION, csv_response
from apps.llm.admin.filters import (
    DayRangeFilter,
    ErrorTypeFilter,
    FeatureDropdownFilter,
    ModelFilter,
    ProviderCostDriftFilter,
    SeenProviderFilter,
    UserFilter,
)
from apps.llm.admin.formatting import badge, format_prompt, format_text, money, money_column
from apps.llm.admin.search import SEARCH_HELP_TEXT, search_condition
from apps.llm.costs import TOKEN, component_label
from apps.llm.models import LLMRequest
from apps.llm.money import usd_precise


class RequestLogChangeList(ChangeList):
    """Leaves the prompt and answer out of list queries, and drills down by date without DISTINCT."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: list | None = None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).defer("prompt", "response", "error_message")

    @cached_property
    def fast_date_hierarchy(self) -> dict[str, Any]:
        """What Django's ``{% date_hierarchy %}`` shows, with choices spanning MIN..MAX.

        Django lists the months/days that have rows with SELECT DISTINCT over all of them; here
        the bounds come from two index probes and every month/day between them is offered (a
        quiet day in the middle leads to an empty page, a small price for not scanning).
        """
        name = self.date_hierarchy
        year, month, day = (self.params.get(f"{name}__{part}") for part in ("year", "month", "day"))

        def link(filters: dict[str, Any]) -> str:
            return self.get_query_string(filters, [f"{name}__"])

        def title(value: date, fmt: str) -> str:
            return capfirst(formats.date_format(value, fmt))

        if year and month and day:
            chosen = date(int(year), int(month), int(day))
            return {
                "show": True,
                "back": {
                    "link": link({f"{name}__year": year, f"{name}__month": month}),
                    "title": title(chosen, "YEAR_MONTH_FORMAT"),
                },
                "choices": [{"title": title(chosen, "MONTH_DAY_FORMAT")}],
            }
        # The date lookups already narrowed self.queryset, so these bounds lie inside them.
        bounds = self.queryset.aggregate(first=Min(name), last=Max(name))
        if bounds["first"] is None:
            return {"show": False}
        first, last = (timezone.localtime(bounds[k]).date() for k in ("first", "last"))
        if not year and first.year == last.year:
            year = first.year
            if first.month == last.month:
                month = first.month
        if year and month:
            year, month = int(year), int(month)
            days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
            return {
                "show": True,
                "back": {"link": link({f"{name}__year": year}), "title": str(year)},
                "choices": [
                    {
                        "link": link({f"{name}__year": year, f"{name}__month": month, f"{name}__day": d.day}),
                        "title": title(d, "MONTH_DAY_FORMAT"),
                    }
                    for d in days
                    if first <= d <= last
                ],
            }
        if year:
            year = int(year)
            low, high = max(first, date(year, 1, 1)), min(last, date(year, 12, 31))
            return {
                "show": True,
                "back": {"link": link({}), "title": "All dates"},
                "choices": [
                    {
                        "link": link({f"{name}__year": year, f"{name}__month": m}),
                        "title": title(date(year, m, 1), "YEAR_MONTH_FORMAT"),
                    }
                    for m in range(low.month, high.month + 1)
                ],
            }
        return {
            "show": True,
            "back": None,
            "choices": [
                {"link": link({f"{name}__year": y}), "title": str(y)} for y in range(first.year, last.year + 1)
            ],
        }


#: A refusal (a budget said no before anything was sent) is a warning, not an error.
STATUS_VARIANTS = {"success": "success", "error": "danger", "refused": "warning"}
#: Columns the detail page shows through a method of the admin (formatted) or a relation.
DETAIL_FIELDS = {
    "status": "status_label",
    "user_id": "user",
    "price_id": "price",
    "cost": "cost_display",
    "cost_breakdown": "cost_breakdown_display",
    "provider_cost": "provider_cost_money",
    "saved_cost": "saved_cost_money",
    "latency_ms": "latency_display",
    "time_to_first_token_ms": "time_to_first_token_display",
    "prompt": "prompt_display",
    "response": "response_display",
}


def breakdown_table(lines: Any) -> str:
    """A stored cost breakdown (``CostBreakdown.lines()``) as a small table: component, quantity, unit price, amount."""
    if not lines:
        return "—"
    rows = format_html_join("", "<tr>{}</tr>", ((_breakdown_cells(line),) for line in lines if isinstance(line, dict)))
    return format_html(
        '<table class="llm-cost-breakdown" style="{}"><thead><tr>'
        '<th>component</th><th style="text-align:right">quantity</th>'
        '<th style="text-align:right">unit price</th><th style="text-align:right">amount</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        "border-collapse:collapse;font-size:12px",
        rows,
    )


def _breakdown_cells(line: dict[str, Any]) -> str:
    unit = line.get("unit", "")
    quantity = _decimal(line.get("quantity"))
    price = _decimal(line.get("unit_price"))
    priced_as = line.get("priced_as", "")
    # A token costs millionths of a cent: per-token prices are read per million, as price lists show them.
    if price is None:
        unit_price = "—"
    elif unit == TOKEN:
        unit_price = f"{usd_precise(price * 1_000_000)} / M tokens"
    else:
        unit_price = f"{usd_precise(price)} / {unit}"
    own_price = priced_as in ("", line.get("component"))
    return format_html(
        '<td title="{}">{}{}</td><td style="text-align:right">{} {}</td>'
        '<td style="text-align:right">{}</td><td style="text-align:right">{}</td>',
        line.get("component", ""),
        component_label(str(line.get("component", ""))),
        "" if own_price else format_html(' <small style="opacity:.7">(at the {} price)</small>', priced_as),
        f"{quantity:,}" if quantity is not None else "—",
        unit + ("s" if unit and quantity != 1 else ""),
        unit_price,
        money(_decimal(line.get("amount"))),
    )


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (ArithmeticError, ValueError):
        return None


@admin.register(LLMRequest)
class LLMRequestAdmin(DashboardLinkMixin, ReadOnlyAdmin):
    """The raw request log: read-only, and fast on tens of millions of rows (see the module doc)."""

    change_list_template = "admin/llm/llmrequest/change_list.html"
    list_display = [
        "created_at",
        "status_label",
        "provider",
        "model",
        "feature",
        "user_display",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost_display",
        "latency_display",
        "cached",
    ]
    list_display_links = ["created_at"]
    # Sorting by any other column would sort the whole table.
    sortable_by = ["created_at"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    list_filter = [
        ("created_at", DayRangeFilter),
        ("status", ChoicesDropdownFilter),
        ErrorTypeFilter,
        SeenProviderFilter,
        ModelFilter,
        ("cached", BooleanRadioFilter),
        UserFilter,
        FeatureDropdownFilter,
        ProviderCostDriftFilter,
    ]
    list_filter_submit = True
    actions = None
    search_fields = ["request_id"]  # enables the box; the lookups are get_search_results'
    search_help_text = SEARCH_HELP_TEXT
    #: Most calls one CSV export holds.
    export_max_rows = MAX_EXPORT_ROWS
    fieldsets = [
        (group, {"fields": [DETAIL_FIELDS.get(c, c) for c in columns]}) for group, columns in COLUMN_GROUPS.items()
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RequestLogChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """``key:value`` terms, each an indexed lookup (``apps.llm.admin.search``); a substring
        search over the columns would read every row."""
        condition = search_condition(search_term)
        return (queryset, False) if condition is None else (queryset.filter(condition), False)

    def get_urls(self) -> list[URLPattern]:
        export = path("export/", self.admin_site.admin_view(self.export_view), name="llm_llmrequest_export")
        return [export, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        # The export link carries the page's filters and search (not its page number).
        query = request.GET.copy()
        query.pop(PAGE_VAR, None)
        export_url = reverse("admin:llm_llmrequest_export") + (f"?{query.urlencode()}" if query else "")
        context = {"export_url": export_url, "export_max_rows": f"{self.export_max_rows:,}"}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The calls the changelist shows for the same querystring, every page of them, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        problems = querystring_problems(request.GET, self.date_hierarchy)
        if problems:
            return HttpResponseBadRequest(
                "\n".join(f"{name}: {problem}" for name, problem in problems.items()),
                content_type="text/plain; charset=utf-8",
            )
        # Every page is exported: a page number past the last would be refused by the changelist.
        query = request.GET.copy()
        query.pop(PAGE_VAR, None)
        request.GET = query  # type: ignore[assignment]
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            return HttpResponseBadRequest(f"Filters not understood: {error}", content_type="text/plain")
        return csv_response(
            changelist.queryset,
            with_text=request.user.has_perm(TEXT_PERMISSION),
            limit=self.export_max_rows,
        )

    @admin.display(description="status")
    def status_label(self, obj: LLMRequest) -> str:
        return format_html(
            '<span title="{}">{}</span>', obj.error_type, badge(obj.status, STATUS_VARIANTS.get(obj.status, ""))
        )

    @admin.display(description="user")
    def user_display(self, obj: Any) -> str:
        return user_of(obj)

    @admin.display(description="cost")
    def cost_display(self, obj: LLMRequest) -> str:
        if obj.cost is None:
            return "unknown price" if obj.status == LLMRequest.Status.SUCCESS else "—"
        if obj.cached and obj.saved_cost:
            return f"{money(obj.cost)} (saved {money(obj.saved_cost)})"
        if obj.provider_cost is not None and obj.provider_cost != obj.cost:
            drift = money(obj.cost - obj.provider_cost, signed=True)
            return f"{money(obj.cost)} (provider: {money(obj.provider_cost)}, ours {drift})"
        return money(obj.cost)

    provider_cost_money = money_column("provider_cost", "provider's cost")
    saved_cost_money = money_column("saved_cost", "saved by the cache")

    @admin.display(description="time to first token")
    def time_to_first_token_display(self, obj: LLMRequest) -> str:
        return "—" if obj.time_to_first_token_ms is None else f"{obj.time_to_first_token_ms:,.0f} ms"

    @admin.display(description="How this cost was computed")
    def cost_breakdown_display(self, obj: LLMRequest) -> str:
        return breakdown_table(obj.cost_breakdown)

    @admin.display(description="latency")
    def latency_display(self, obj: LLMRequest) -> str:
        return f"{obj.latency_ms:,.0f} ms"

    @admin.display(description="prompt")
    def prompt_display(self, obj: LLMRequest) -> str:
        if obj.prompt is None:
            return "Not stored (LLM_STORE_TEXT)."
        return format_prompt(obj.prompt)

    @admin.display(description="answer")
    def response_display(self, obj: LLMRequest) -> str:
        if obj.response is None:
            return "Not stored (LLM_STORE_TEXT)." if obj.status == LLMRequest.Status.SUCCESS else "—"
        return format_text(obj.response)
