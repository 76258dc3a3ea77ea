"""The model-price admin (history, filters, "Sync now") and the record of pricing-sync runs."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin

from apps.llm.admin.base import QuerystringGuard
from apps.llm.admin.formatting import usd_precise
from apps.llm.models import ModelPrice, PricingSyncRun
from apps.llm.pricing.sheets import PER_UNIT_COMPONENTS, PRICE_COMPONENTS

MILLION = Decimal(1_000_000)
#: What a per-unit price is charged for.
UNITS = {"request": "request", "image": "image", "web_search": "search"}


def price_text(component: str, value: Decimal | None) -> str:
    """A price as price lists show it: per million tokens (``$0.15 / M tokens``) or per unit (``$0.01 / search``)."""
    if value is None:
        return "—"
    if component in PER_UNIT_COMPONENTS:
        return f"{usd_precise(value)} / {UNITS.get(component, 'unit')}"
    return f"{usd_precise(value * MILLION)} / M tokens"


def price_column(component: str) -> Callable[[Any, ModelPrice], str]:
    """A display method for the price column ``component`` (raw, it reads ``0.000000150000000000000000``)."""

    def show(model_admin: Any, obj: ModelPrice) -> str:
        return price_text(component, getattr(obj, component))

    show.__name__ = f"{component}_price"
    return admin.display(description=component.replace("_", " "))(show)


#: The detail page's price columns, each through ``price_text``.
PRICE_DISPLAYS = [f"{component}_price" for component in PRICE_COMPONENTS]


class CurrentFilter(admin.SimpleListFilter):
    title = "period"
    parameter_name = "period"

    def lookups(self, request, model_admin):
        return [("current", "Current"), ("history", "Superseded")]

    def queryset(self, request, queryset):
        if self.value() == "current":
            return queryset.filter(valid_to__isnull=True)
        if self.value() == "history":
            return queryset.filter(valid_to__isnull=False)
        return queryset


@admin.register(ModelPrice)
class ModelPriceAdmin(QuerystringGuard, ModelAdmin):
    """Prices come from the bundled files and the pricing sync, so rows are read-only here.

    Only ``is_active`` may be changed: editing a price in place would rewrite the history that
    past costs were computed from.
    """

    list_display = [
        "model_id",
        "provider",
        "prompt_per_million",
        "completion_per_million",
        "context_length",
        "is_active",
        "valid_from",
        "valid_to",
    ]
    list_filter = [CurrentFilter, "provider", "is_active", "source"]
    search_fields = ["model_id", "canonical_slug", "name"]
    ordering = ["provider", "model_id", "-valid_from"]
    list_per_page = 100
    # The price columns are shown through price_text (per million tokens or per unit), never as
    # inputs of 24 decimals: only is_active is editable.
    exclude = list(PRICE_COMPONENTS)
    readonly_fields = [
        "provider",
        "model_id",
        "canonical_slug",
        "name",
        *PRICE_DISPLAYS,
        "extra_prices",
        "tiers",
        "context_length",
        "modality",
        "input_modalities",
        "output_modalities",
        "source",
        "fetched_at",
        "valid_from",
        "valid_to",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Prompt $/M", ordering="prompt")
    def prompt_per_million(self, obj: ModelPrice) -> str:
        return usd_precise(obj.prompt * MILLION)

    @admin.display(description="Completion $/M", ordering="completion")
    def completion_per_million(self, obj: ModelPrice) -> str:
        return usd_precise(obj.completion * MILLION)

    # -- "Sync now" and the last sync runs (templates/admin/llm/modelprice/change_list.html) ----

    def get_urls(self):
        sync_now = path("sync-now/", self.admin_site.admin_view(self.sync_now_view), name="llm_modelprice_sync_now")
        return [sync_now, *super().get_urls()]

    def has_sync_permission(self, request: HttpRequest) -> bool:
        """Who may refresh prices: those who may change price rows (withdraw a model)."""
        return self.has_change_permission(request)

    def sync_now_view(self, request: HttpRequest) -> HttpResponse:
        """Queue the pricing sync for a worker; the page shows its run once it has finished."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        # Imported here: the actor module declares its queue on the broker when imported.
        from apps.llm.tasks import sync_model_pricing

        sync_model_pricing.send(trigger="admin")
        self.message_user(
            request, "Pricing sync queued: a worker runs it shortly; reload this page for the result.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:llm_modelprice_changelist"))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "pricing_sync_runs": PricingSyncRun.latest_per_provider(),
            "pricing_sync_url": reverse("admin:llm_modelprice_sync_now") if self.has_sync_permission(request) else "",
        }
        return super().changelist_view(request, extra_context)


# One display method per price column (``prompt_price``...), whatever columns PRICE_COMPONENTS names.
for _component in PRICE_COMPONENTS:
    setattr(ModelPriceAdmin, f"{_component}_price", price_column(_component))


@admin.register(PricingSyncRun)
class PricingSyncRunAdmin(QuerystringGuard, ModelAdmin):
    """The history of pricing syncs; written by the sync only, so read-only here."""

    list_display = [
        "started_at",
        "provider",
        "trigger",
        "status",
        "added",
        "changed",
        "deactivated",
        "reactivated",
        "rejected",
        "duration_ms",
    ]
    list_filter = ["status", "provider", "trigger"]
    ordering = ["-started_at"]
    fields = [
        "provider",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "duration_ms",
        "source",
        "added",
        "changed",
        "deactivated",
        "reactivated",
        "unchanged",
        "rejected",
        "error",
        "summary_text",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PricingSyncRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PricingSyncRun | None = None) -> bool:
        return False

    @admin.display(description="Summary")
    def summary_text(self, obj: PricingSyncRun) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.summary)
