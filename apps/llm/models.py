from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .pricing import PRICE_COMPONENTS, PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS, ModelPricing
from .pricing_store import pricing_from_row

if TYPE_CHECKING:
    from .recording import CallRecord


def _price_field(help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, default=0, help_text=help_text
    )


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

    prompt = _price_field("USD per input token.")
    completion = _price_field("USD per output token.")
    request = _price_field("USD per request.")
    image = _price_field("USD per input image (or image token, in newer catalogs).")
    input_cache_read = _price_field("USD per cached input token read.")
    input_cache_write = _price_field("USD per input token written to the cache.")
    internal_reasoning = _price_field("USD per reasoning token (0: billed as output).")
    web_search = _price_field("USD per web search.")
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


def _money(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, **kwargs)


#: Upper bounds (ms) of the latency histogram buckets kept in the daily rollups; the last
#: bucket takes everything slower.
LATENCY_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000,
                      20_000, 30_000, 60_000)


def latency_bucket(latency_ms: float) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BUCKETS_MS)


class LLMRequest(models.Model):
    """One call of the LLM client: success, failure or cache hit. Written once, never edited."""

    class Status(models.TextChoices):
        SUCCESS = "success"
        ERROR = "error"

    # Made by the client before the call, so replaying a spooled record cannot duplicate it.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=20, help_text="chat, chat.stream or embeddings")
    provider = models.CharField(max_length=50)
    model_requested = models.CharField(max_length=255)
    model = models.CharField(max_length=255, help_text="The model that answered, as the provider named it.")
    status = models.CharField(max_length=10, choices=Status.choices)
    error_type = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)

    cost = _money(null=True, blank=True, help_text="Our cost in USD; empty when the model's price is unknown.")
    provider_cost = _money(null=True, blank=True, help_text="What the provider reported it charged.")
    saved_cost = _money(null=True, blank=True, help_text="A cache hit: the cost of the call it replaced.")
    price = models.ForeignKey(ModelPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                              db_constraint=False, db_index=False,
                              help_text="The price sheet the cost was computed from.")
    cached = models.BooleanField(default=False)

    latency_ms = models.FloatField(default=0)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    cache_key = models.CharField(max_length=100, blank=True, default="")
    # No database constraint: a deleted user must not make the log unwritable. No index of its
    # own either: llm_request_user (user, -created_at) serves every lookup by user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                             db_constraint=False, db_index=False, related_name="+")
    feature = models.CharField(max_length=100, blank=True, default="")
    key_fingerprint = models.CharField(max_length=16, blank=True, default="",
                                       help_text="SHA-256 prefix of the API key used; never the key.")
    request_id = models.CharField(max_length=255, blank=True, default="")
    prompt = models.JSONField(null=True, blank=True, help_text="Stored only when LLM_STORE_TEXT allows.")
    response = models.TextField(null=True, blank=True)

    class Meta:
        verbose_name = "LLM request"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="llm_request_created"),
            models.Index(fields=["model", "-created_at"], name="llm_request_model"),
            models.Index(fields=["user", "-created_at"], name="llm_request_user"),
            models.Index(fields=["feature", "-created_at"], name="llm_request_feature"),
            models.Index(fields=["status", "-created_at"], name="llm_request_status"),
            models.Index(fields=["-cost"], name="llm_request_cost", condition=Q(cost__isnull=False)),
            # The admin's search by a provider's request id.
            models.Index(fields=["request_id"], name="llm_request_request_id", condition=~Q(request_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.model or self.model_requested} {self.status}"

    @classmethod
    def from_call(cls, call: CallRecord, *, store_text: bool, clip: Callable[[str | None], str | None]) -> LLMRequest:
        usage = call.usage

        def fit(value: str, field: str) -> str:
            return value[: cls._meta.get_field(field).max_length]

        return cls(
            id=call.id, created_at=call.created_at, endpoint=call.endpoint, provider=fit(call.provider, "provider"),
            model_requested=fit(call.requested_model, "model_requested"), model=fit(call.model, "model"),
            status=call.status, error_type=fit(call.error_type, "error_type"),
            error_message=clip(call.error_message) or "",
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens, total_tokens=usage.total_tokens,
            cost=call.cost, provider_cost=call.provider_cost, saved_cost=call.saved_cost,
            price_id=call.price_id, cached=call.cached, latency_ms=call.latency_ms,
            time_to_first_token_ms=call.time_to_first_token_ms, attempts=min(call.attempts, 32767),
            cache_key=fit(call.cache_key, "cache_key"), user_id=call.user_id, feature=fit(call.feature, "feature"),
            key_fingerprint=call.key_fingerprint, request_id=fit(call.request_id or "", "request_id"),
            prompt=call.prompt if store_text else None,
            response=clip(call.response_text) if store_text else None,
        )


class UsageSums(models.Model):
    """What a rollup row adds up: the calls of one day and one key (see ``apps.llm.rollups``)."""

    date = models.DateField()
    requests = models.BigIntegerField(default=0)
    successes = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cost = _money(default=0)
    provider_cost = _money(default=0)
    saved_cost = _money(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    latency_histogram = ArrayField(models.BigIntegerField(), default=list, blank=True,
                                   help_text="Requests per latency bucket (LATENCY_BUCKETS_MS).")

    class Meta:
        abstract = True


#: How many calls of each list (costliest, latest failures) a coarse rollup row keeps.
KEPT_CALLS = 10


class KeptCalls(models.Model):
    """The calls a dashboard lists, kept per rollup row: its costliest and its latest failures.

    The costliest (latest) calls of any set of rows are among the union of their lists, so a
    table of them for any period and filter the rollup covers merges a few short lists instead
    of searching the request log.
    """

    top_costs = ArrayField(_money(), default=list, blank=True,
                           help_text=f"Costs of the {KEPT_CALLS} costliest priced calls, highest first.")
    top_ids = ArrayField(models.UUIDField(), default=list, blank=True,
                         help_text="Their request-log ids, in the same order.")
    failure_times = ArrayField(models.DateTimeField(), default=list, blank=True,
                               help_text=f"When the {KEPT_CALLS} latest failed calls were made, latest first.")
    failure_ids = ArrayField(models.UUIDField(), default=list, blank=True,
                             help_text="Their request-log ids, in the same order.")

    class Meta:
        abstract = True


class LLMUsageDaily(UsageSums):
    """Sums of the request log per day, provider, model, user and feature, kept by upserts.

    The finest rollup: every other one (``LLMUsageByModel``, ``LLMUsageByUser``) is a coarser
    grouping of it. Dashboards and ``usage_stats()`` read the rollups, never the raw log.
    """

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                             db_constraint=False, related_name="+")
    feature = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = "daily LLM usage"
        verbose_name_plural = "daily LLM usage"
        constraints = [
            models.UniqueConstraint(fields=["date", "provider", "model", "user", "feature"], nulls_distinct=False,
                                    name="llm_usage_daily_key"),
        ]
        # The key's index serves date ranges; these serve one user's, model's or feature's days.
        indexes = [
            models.Index(fields=["user", "date"], name="llm_usage_daily_user"),
            models.Index(fields=["model", "date"], name="llm_usage_daily_model"),
            models.Index(fields=["feature", "date"], name="llm_usage_daily_feature"),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.provider}:{self.model}"


class LLMUsageByModel(UsageSums, KeptCalls):
    """Daily sums per provider, model and feature: what most dashboard panels read.

    Without the user dimension it holds tens of rows a day however many users there are.
    """

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=255)
    feature = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = "daily LLM usage by model"
        verbose_name_plural = "daily LLM usage by model"
        constraints = [models.UniqueConstraint(fields=["date", "provider", "model", "feature"],
                                               name="llm_usage_by_model_key")]

    def __str__(self) -> str:
        return f"{self.date} {self.provider}:{self.model}"


class LLMUsageByUser(UsageSums, KeptCalls):
    """Daily sums per user (null: calls attributed to nobody), for the per-user panels."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                             db_constraint=False, related_name="+")

    class Meta:
        verbose_name = "daily LLM usage by user"
        verbose_name_plural = "daily LLM usage by user"
        constraints = [models.UniqueConstraint(fields=["date", "user"], nulls_distinct=False,
                                               name="llm_usage_by_user_key")]

    def __str__(self) -> str:
        return f"{self.date} user {self.user_id}"


class Budget(models.Model):
    """A spending limit per day or month: for everything, one user, or one feature.

    Crossing ``soft_limit`` logs a warning and flags the budget; a call that would cross
    ``hard_limit`` (by its cost estimate) is refused before it is sent.
    """

    class Scope(models.TextChoices):
        GLOBAL = "global"
        USER = "user"
        FEATURE = "feature"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.GLOBAL)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="llm_budgets")
    feature = models.CharField(max_length=100, blank=True, default="")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTH)
    soft_limit = _money(null=True, blank=True, help_text="USD; crossing it warns.")
    hard_limit = _money(null=True, blank=True, help_text="USD; calls that would cross it are refused.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(scope="global", user__isnull=True, feature="")
                           | Q(scope="user", user__isnull=False, feature="")
                           | Q(scope="feature", user__isnull=True) & ~Q(feature="")),
                name="llm_budget_scope_matches_target",
            ),
            models.CheckConstraint(
                condition=Q(soft_limit__isnull=True) | Q(hard_limit__isnull=True) | Q(soft_limit__lte=F("hard_limit")),
                name="llm_budget_soft_below_hard",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def period_start(self, today):
        return today.replace(day=1) if self.period == self.Period.MONTH else today

    def applies_to(self, user_id: int | None, feature: str) -> bool:
        if self.scope == self.Scope.USER:
            return user_id is not None and self.user_id == user_id
        if self.scope == self.Scope.FEATURE:
            return self.feature == feature
        return True


class BudgetSpend(models.Model):
    """Spend of one budget in one period: settled cost plus estimates of calls in flight."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="spends")
    period_start = models.DateField()
    spent = _money(default=0)
    reserved = _money(default=0)
    soft_warned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget", "period_start"], name="llm_budget_spend_period")]

    def __str__(self) -> str:
        return f"{self.budget} from {self.period_start}: {self.spent}"


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
        """Copy a ``pricing_sync.SyncReport`` into the counts, summary and JSON columns."""
        for name, value in report.counts().items():
            setattr(self, name, value)
        self.source = report.source()
        self.summary = report.format()
        self.report = report.model_dump(mode="json")

    @classmethod
    def latest_per_provider(cls) -> list[PricingSyncRun]:
        """The most recent run of each provider, for the price list's status panel."""
        return list(cls.objects.order_by("provider", "-started_at").distinct("provider"))
