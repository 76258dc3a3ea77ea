from decimal import Decimal

from django.contrib import admin
from unfold.admin import ModelAdmin

from .models import ModelPrice
from .pricing import PRICE_COMPONENTS

MILLION = Decimal(1_000_000)


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
class ModelPriceAdmin(ModelAdmin):
    """Prices come from the bundled files and the pricing sync, so rows are read-only here.

    Only ``is_active`` may be changed: editing a price in place would rewrite the history that
    past costs were computed from.
    """

    list_display = ["model_id", "provider", "prompt_per_million", "completion_per_million", "context_length",
                    "is_active", "valid_from", "valid_to"]
    list_filter = [CurrentFilter, "provider", "is_active", "source"]
    search_fields = ["model_id", "canonical_slug", "name"]
    ordering = ["provider", "model_id", "-valid_from"]
    list_per_page = 100
    readonly_fields = [
        "provider", "model_id", "canonical_slug", "name", *PRICE_COMPONENTS, "extra_prices", "tiers",
        "context_length", "modality", "input_modalities", "output_modalities", "source", "fetched_at",
        "valid_from", "valid_to",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Prompt $/M", ordering="prompt")
    def prompt_per_million(self, obj: ModelPrice) -> str:
        return f"{(obj.prompt * MILLION).normalize():f}"

    @admin.display(description="Completion $/M", ordering="completion")
    def completion_per_million(self, obj: ModelPrice) -> str:
        return f"{(obj.completion * MILLION).normalize():f}"
