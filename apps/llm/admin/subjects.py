"""The objects LLM calls are about (their subject), on admin pages: links, and ``LLMCostMixin``.

    from apps.llm.admin import LLMCostMixin

    @admin.register(Ticket)
    class TicketAdmin(LLMCostMixin, ModelAdmin):
        list_display = [..., "llm_cost"]      # optional: a column as well

A call is about an object when it was made inside ``llm_context(subject=obj)`` or
``llm_trace(..., subject=obj)``. The mixin adds a read-only "LLM cost" field to the change page
(``usage_for(obj)``: calls, tokens, cost) with a link to those calls in the request log;
``llm_cost`` in ``list_display`` shows it as a column too, read for the whole page in one
grouped query on the log's subject index (not one ``usage_for`` per row). The figures cover the
request log's retention (``LLM_RETENTION_DAYS``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, Sum
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from apps.llm.admin.formatting import money
from apps.llm.models import LLMRequest

__all__ = ["LLMCostMixin", "load_subjects", "subject_html", "subject_log_url"]

#: The attribute ``LLMCostMixin`` leaves on each object of a changelist page: (calls, failures, tokens, cost).
_USAGE_ATTRIBUTE = "_llm_cost_usage"


def subject_log_url(content_type_id: int, object_id: str) -> str:
    """The request-log changelist narrowed to the calls about one object (both are indexed columns)."""
    query = urlencode({"subject_type__id__exact": str(content_type_id), "subject_id": object_id})
    return f"{reverse('admin:llm_llmrequest_changelist')}?{query}"


def load_subjects(pairs: Iterable[tuple[int | None, str | None]]) -> dict[tuple[int, str], Any]:
    """The objects behind ``(content type id, object id)`` pairs: one query per content type.

    Pairs whose model is gone (a removed app), whose id does not fit the model's key, or whose
    object was deleted are left out: the log keeps no constraint on its subjects.
    """
    wanted: dict[int, set[str]] = defaultdict(set)
    for type_id, object_id in pairs:
        if type_id is not None and object_id is not None:
            wanted[type_id].add(object_id)
    found: dict[tuple[int, str], Any] = {}
    for type_id, ids in wanted.items():
        try:
            model = ContentType.objects.get_for_id(type_id).model_class()
        except ContentType.DoesNotExist:
            continue
        if model is None:
            continue
        keys = []
        for object_id in ids:
            try:
                keys.append(model._meta.pk.to_python(object_id))
            except (ValidationError, ValueError, TypeError):
                continue
        for obj in model._default_manager.filter(pk__in=keys):
            found[(type_id, str(obj.pk))] = obj
    return found


def change_url(obj: Any, request: HttpRequest, admin_site: AdminSite | None = None) -> str:
    """The admin change page of ``obj`` when its model has an admin the user may view; else ""."""
    admin_site = admin_site or admin.site
    model_admin = admin_site._registry.get(type(obj))
    if model_admin is None or not model_admin.has_view_or_change_permission(request, obj):
        return ""
    opts = obj._meta
    try:
        return reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
    except NoReverseMatch:  # an admin without a change page
        return ""


def subject_html(
    type_id: int | None, object_id: str | None, obj: Any, request: HttpRequest, admin_site: AdminSite | None = None
) -> str:
    """A subject as a page shows it: "document: report.pdf", linked to its admin page when it has one."""
    if type_id is None or object_id is None:
        return "—"
    try:
        kind = ContentType.objects.get_for_id(type_id).name
    except ContentType.DoesNotExist:
        kind = f"type #{type_id}"
    if obj is None:
        return format_html("{} #{} <small>(deleted)</small>", kind, object_id)
    url = change_url(obj, request, admin_site)
    if not url:
        return format_html("{}: {}", kind, obj)
    return format_html('<a href="{}">{}: {}</a>', url, kind, obj)


def _usage_html(calls: int, failures: int, tokens: int, cost: Decimal, log_url: str) -> str:
    if not calls:
        return "No LLM calls"
    failed = format_html(' · <span style="color:#b91c1c">{} failed</span>', failures) if failures else ""
    return format_html(
        '<a href="{}" class="llm-cost" title="These calls in the request log">{} · {} call{} · {} tokens</a>{}',
        log_url,
        money(cost),
        f"{calls:,}",
        "" if calls == 1 else "s",
        f"{tokens:,}",
        failed,
    )


def _attach_usage(objs: list[Any]) -> None:
    """Each object's (calls, failures, tokens, cost), grouped in one query per model, as ``usage_for`` counts them."""
    by_model: dict[type, list[Any]] = defaultdict(list)
    for obj in objs:
        by_model[type(obj)].append(obj)
    for model, group in by_model.items():
        content_type = ContentType.objects.get_for_model(model)
        rows = (
            LLMRequest.objects.filter(subject_type=content_type, subject_id__in=[str(o.pk) for o in group])
            .order_by()
            .values("subject_id")
            .annotate(
                calls=Count("id"),
                failures=Count("id", filter=Q(status=LLMRequest.Status.ERROR)),
                # As usage_for: a cache hit's tokens were not sent again.
                tokens=Sum("total_tokens", filter=Q(cached=False)),
                cost=Sum("cost"),
            )
        )
        usage = {r["subject_id"]: (r["calls"], r["failures"], r["tokens"] or 0, r["cost"] or Decimal(0)) for r in rows}
        for obj in group:
            setattr(obj, _USAGE_ATTRIBUTE, usage.get(str(obj.pk), (0, 0, 0, Decimal(0))))


class LLMCostMixin:
    """An "LLM cost" read-only field (and ``llm_cost`` column) on any ModelAdmin: see the module doc."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        # Only on an object's page: a new one has no calls yet.
        return [*fields, "llm_cost"] if obj is not None and "llm_cost" not in fields else fields

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)  # type: ignore[misc]
        if "llm_cost" in changelist.list_display:
            # list() fills the page's result cache: the rows rendered are these objects.
            _attach_usage(list(changelist.result_list))
        return changelist

    @admin.display(description="LLM cost")
    def llm_cost(self, obj: Any) -> str:
        if obj is None or obj.pk is None:
            return "—"
        usage: tuple[int, int, int, Decimal] | None = getattr(obj, _USAGE_ATTRIBUTE, None)
        if usage is None:  # not on a changelist page: the object's page
            from apps.llm.accounting.usage import usage_for

            stats = usage_for(obj)
            usage = (stats.total_requests, stats.errors, stats.total_tokens, stats.total_cost)
        calls, failures, tokens, cost = usage
        content_type = ContentType.objects.get_for_model(obj)
        return _usage_html(calls, failures, tokens, cost, subject_log_url(content_type.pk, str(obj.pk)))
