"""Model prices and their history, and the runs of the pricing sync that keep them."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from apps.llm.models.fields import price_field
from apps.llm.pricing.sheets import (
    PRICE_COMPONENTS,
    ModelPricing,
)
from apps.llm.pricing.store import pricing_from_row


class ModelPriceQuerySet(models.QuerySet):
    def current(self) -> ModelPriceQuerySet:
        """The prices in force: not superseded (``valid_to`` unset) and not withdrawn."""
        return self.filter(valid_to__isnull=True, is_active=True)


class ModelPrice(models.Model):
    """The price sheet of one model at one provider, over the period it was in force.

    A price change never edits a row: the current row gets ``valid_to`` and a new row starts
    at the same instant, so the cost of any past call can be recomputed from the prices of
    its day. At most one row per (provider, model_id) is current (``valid_to`` null).
    """

    provider = models.CharField(max_length=50, help_text='"openrouter", "openai"...')
    model_id = models.CharField(max_length=255, help_text="The model as the provider's API names it.")
    canonical_slug = models.CharField(
        max_length=255, blank=True, default="", help_text="OpenRouter's permanent slug, which responses report."
    )
    name = models.CharField(max_length=255, blank=True, default="")

    prompt = price_field("USD per input token.")
    completion = price_field("USD per output token.")
    request = price_field("USD per request.")
    image = price_field("USD per input image (or image token, in newer catalogs).")
    input_cache_read = price_field("USD per cached input token read.")
    input_cache_write = price_field("USD per input token written to the cache.")
    internal_reasoning = price_field("USD per reasoning token (0: billed as output).")
    web_search = price_field("USD per web search.")
    extra_prices = models.JSONField(
        default=dict,
        blank=True,
        help_text='Other components, as decimal strings: {"input_cache_write_1h": "0.000006"}.',
    )
    tiers = models.JSONField(
        default=list, blank=True, help_text='Conditional prices: [{"min_prompt_tokens": 200000, "prompt": "..."}].'
    )

    context_length = models.PositiveIntegerField(null=True, blank=True)
    modality = models.CharField(max_length=100, blank=True, default="", help_text='e.g. "text+image->text".')
    input_modalities = models.JSONField(default=list, blank=True)
    output_modalities = models.JSONField(default=list, blank=True)

    source = models.CharField(max_length=255, help_text="Where the prices came from.")
    fetched_at = models.DateTimeField(null=True, blank=True, help_text="When the source was read.")
    is_active = models.BooleanField(default=True, help_text="Unset when the provider stops offering the model.")
    valid_from = models.DateTimeField(default=timezone.now)
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Empty while the prices are current.")

    objects = ModelPriceQuerySet.as_manager()

    class Meta:
        ordering = ["provider", "model_id", "-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_id"],
                condition=Q(valid_to__isnull=True),
                name="llm_modelprice_one_current_per_model",
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")),
                name="llm_modelprice_valid_period",
            ),
            models.CheckConstraint(
                condition=Q(**{f"{component}__gte": 0 for component in PRICE_COMPONENTS}),
                name="llm_modelprice_prices_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["provider", "model_id", "valid_from"], name="llm_modelprice_lookup"),
            models.Index(fields=["canonical_slug"], name="llm_modelprice_slug"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.model_id}"

    def to_pricing(self) -> ModelPricing:
        return pricing_from_row(self)


class PricingSyncRun(models.Model):
    """One run of the model-pricing sync (scheduled, from the admin or the command).

    Kept so that the admin can show when prices were last refreshed and what changed, and
    so that a sync that keeps failing (network, a refused catalog) is visible, not silent.
    """

    class Status(models.TextChoices):
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    provider = models.CharField(max_length=50)
    trigger = models.CharField(max_length=20, help_text='"schedule", "admin" or "command".')
    status = models.CharField(max_length=10, choices=Status.choices)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    source = models.TextField(blank=True, default="", help_text="The catalog URLs or files read.")

    added = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    deactivated = models.PositiveIntegerField(default=0)
    reactivated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)

    summary = models.TextField(blank=True, default="", help_text="The report as the command prints it.")
    error = models.TextField(blank=True, default="", help_text="Why the run failed; nothing was written then.")
    report = models.JSONField(null=True, blank=True, help_text="The full report: model ids and old/new prices.")

    class Meta:
        verbose_name = "pricing sync run"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["provider", "-started_at"], name="llm_pricingsync_latest")]

    def __str__(self) -> str:
        return f"{self.provider} {self.status} {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def ok(self) -> bool:
        return self.status == self.Status.OK

    def set_report(self, report) -> None:
        """Copy a ``pricing.report.SyncReport`` into the counts, summary and JSON columns."""
        for name, value in report.counts().items():
            setattr(self, name, value)
        self.source = report.source()
        self.summary = report.format()
        self.report = report.model_dump(mode="json")

    @classmethod
    def latest_per_provider(cls) -> list[PricingSyncRun]:
        """The most recent run of each provider, for the price list's status panel."""
        return list(cls.objects.order_by("provider", "-started_at").distinct("provider"))
