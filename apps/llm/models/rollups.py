"""The daily rollups of the request log (kept by ``apps.llm.accounting.rollups``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from apps.llm.models.fields import money_field


class UsageSums(models.Model):
    """What a rollup row adds up: the calls of one day and one key (see ``apps.llm.accounting.rollups``)."""

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
    cost = money_field(default=0)
    provider_cost = money_field(default=0)
    saved_cost = money_field(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)
    # How trustworthy the costs above are (the dashboard's cost-accuracy panel). They have database
    # defaults as well: rows inserted by SQL written before them (frozen migrations) get 0.
    refusals = models.BigIntegerField(
        default=0, db_default=0, help_text="Calls refused before sending (budgets); not failures."
    )
    unpriced = models.BigIntegerField(default=0, db_default=0, help_text="Answered calls of a model without a price.")
    estimated = models.BigIntegerField(
        default=0, db_default=0, help_text="Calls priced from locally counted tokens or from an estimated price."
    )
    reported_calls = models.BigIntegerField(
        default=0, db_default=0, help_text="Calls with our cost and the provider's own."
    )
    reported_cost = money_field(default=0, db_default=0, help_text="Our cost of those calls.")
    reported_provider_cost = money_field(default=0, db_default=0, help_text="What the provider said those calls cost.")
    latency_histogram = ArrayField(
        models.BigIntegerField(),
        default=list,
        blank=True,
        help_text="Requests per latency bucket (LATENCY_BUCKETS_MS).",
    )

    class Meta:
        abstract = True


#: The counters every rollup row adds up, in column order: the one list of them (the rollups'
#: upserts, the dashboard's totals and the usage stats all read it).
COUNTERS: tuple[str, ...] = tuple(
    f.name for f in UsageSums._meta.local_fields if f.name not in ("id", "date", "latency_histogram")
)


def zero_counters() -> dict[str, Any]:
    """Every counter at zero: ``Decimal`` for money, ``int`` for the rest."""
    return {
        name: Decimal(0) if isinstance(UsageSums._meta.get_field(name), models.DecimalField) else 0 for name in COUNTERS
    }


#: The counters of a summary row: ``usage_stats()`` and the dashboard's per model/user/feature rows.
SUMMARY_COUNTERS = ("requests", "failures", "refusals", "cache_hits", "total_tokens", "cost", "saved_cost")


#: How many calls of each list (costliest, latest failures) a coarse rollup row keeps.
KEPT_CALLS = 10


class KeptCalls(models.Model):
    """The calls a dashboard lists, kept per rollup row: its costliest and its latest failures.

    The costliest (latest) calls of any set of rows are among the union of their lists, so a
    table of them for any period and filter the rollup covers merges a few short lists instead
    of searching the request log.
    """

    top_costs = ArrayField(
        money_field(),
        default=list,
        blank=True,
        help_text=f"Costs of the {KEPT_CALLS} costliest priced calls, highest first.",
    )
    top_ids = ArrayField(
        models.UUIDField(), default=list, blank=True, help_text="Their request-log ids, in the same order."
    )
    failure_times = ArrayField(
        models.DateTimeField(),
        default=list,
        blank=True,
        help_text=f"When the {KEPT_CALLS} latest failed calls were made, latest first.",
    )
    failure_ids = ArrayField(
        models.UUIDField(), default=list, blank=True, help_text="Their request-log ids, in the same order."
    )

    class Meta:
        abstract = True


class LLMUsageDaily(UsageSums):
    """Sums of the request log per day, provider, model, user and feature, kept by upserts.

    The finest rollup: every other one (``LLMUsageByModel``, ``LLMUsageByUser``) is a coarser
    grouping of it. Dashboards and ``usage_stats()`` read the rollups, never the raw log.
    """

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=255)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    feature = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = "daily LLM usage"
        verbose_name_plural = "daily LLM usage"
        constraints = [
            models.UniqueConstraint(
                fields=["date", "provider", "model", "user", "feature"],
                nulls_distinct=False,
                name="llm_usage_daily_key",
            ),
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
        constraints = [
            models.UniqueConstraint(fields=["date", "provider", "model", "feature"], name="llm_usage_by_model_key")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.provider}:{self.model}"


class LLMUsageByUser(UsageSums, KeptCalls):
    """Daily sums per user (null: calls attributed to nobody), for the per-user panels."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        verbose_name = "daily LLM usage by user"
        verbose_name_plural = "daily LLM usage by user"
        constraints = [
            models.UniqueConstraint(fields=["date", "user"], nulls_distinct=False, name="llm_usage_by_user_key")
        ]
        # A period's spend per user (the dashboard's top users and its user choices) by an index-only
        # scan: the rows themselves are wide (histogram, lists of calls; 90 days of 200 users: 28 MB).
        indexes = [models.Index(fields=["date"], include=["user", *SUMMARY_COUNTERS], name="llm_usage_by_user_sums")]

    def __str__(self) -> str:
        return f"{self.date} user {self.user_id}"


class LLMUsageByTag(UsageSums, KeptCalls):
    """Daily sums per tag: a call counts once under each of its tags, a call without tags nowhere.

    Tags are many per call, so these rows do not add up to the day's total (a call with two tags
    is in two rows) and no other dimension can be read from them: ``rollup_for`` never picks this
    table; the dashboard reads it only for a tag (``apps.llm.accounting.rollups.tag_rollup``).
    """

    tag = models.CharField(max_length=100)

    class Meta:
        verbose_name = "daily LLM usage by tag"
        verbose_name_plural = "daily LLM usage by tag"
        constraints = [models.UniqueConstraint(fields=["date", "tag"], name="llm_usage_by_tag_key")]
        # The key's index serves a period's tags (the breakdown); this one a tag's days (the filter).
        indexes = [models.Index(fields=["tag", "date"], name="llm_usage_by_tag_tag")]

    def __str__(self) -> str:
        return f"{self.date} tag {self.tag}"
