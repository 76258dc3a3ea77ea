"""The request log: one row per call of the client, written once."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q, Value
from django.utils import timezone

from apps.llm.models.fields import money_field
from apps.llm.models.prices import ModelPrice
from apps.llm.models.traces import LLMTrace

#: Upper bounds (ms) of the latency histogram buckets kept in the daily rollups; the last
#: bucket takes everything slower.
LATENCY_BUCKETS_MS = (
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    7500,
    10_000,
    15_000,
    20_000,
    30_000,
    60_000,
)
#: A histogram has one bucket per bound, and one for everything slower.
HISTOGRAM_BUCKETS = len(LATENCY_BUCKETS_MS) + 1


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
        REFUSED = "refused"

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
    # The counts of the other price components (see ``Usage``). Database defaults too, so
    # bulk writers that predate them can leave them out.
    cache_write_1h_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of the cache writes: written with a 1-hour time to live."
    )
    audio_tokens = models.PositiveIntegerField(default=0, db_default=0, help_text="Part of the prompt: audio input.")
    cached_audio_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of the cached tokens and of the audio input: cached audio."
    )
    image_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of the prompt: image input counted as tokens."
    )
    output_audio_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of the completion: generated audio."
    )
    output_image_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of the completion: generated images."
    )
    input_images = models.PositiveIntegerField(default=0, db_default=0, help_text="Images sent in the request.")
    web_search_requests = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Web searches the provider ran for the call."
    )

    cost = money_field(null=True, blank=True, help_text="Our cost in USD; empty when the model's price is unknown.")
    provider_cost = money_field(null=True, blank=True, help_text="What the provider reported it charged.")
    saved_cost = money_field(null=True, blank=True, help_text="A cache hit: the cost of the call it replaced.")
    price = models.ForeignKey(
        ModelPrice,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
        help_text="The price sheet the cost was computed from.",
    )
    cost_breakdown = models.JSONField(
        null=True, blank=True, help_text="How the cost was computed: component, quantity, unit price, amount."
    )
    cached = models.BooleanField(default=False)

    latency_ms = models.FloatField(default=0)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    cache_key = models.CharField(max_length=100, blank=True, default="")
    # No database constraint: a deleted user must not make the log unwritable. No index of its
    # own either: llm_request_user (user, -created_at) serves every lookup by user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    feature = models.CharField(max_length=100, blank=True, default="")
    key_fingerprint = models.CharField(
        max_length=16, blank=True, default="", help_text="SHA-256 prefix of the API key used; never the key."
    )
    request_id = models.CharField(max_length=255, blank=True, default="")
    prompt = models.JSONField(null=True, blank=True, help_text="Stored only when LLM_STORE_TEXT allows.")
    # NULL: not stored (LLM_STORE_TEXT); "" is an empty answer.
    response = models.TextField(null=True, blank=True)  # noqa: DJ001
    tool_calls = models.JSONField(null=True, blank=True, help_text="Stored only when LLM_STORE_TEXT allows.")
    # Database defaults too: bulk writers (COPY) that predate these columns leave them out.
    usage_estimated = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Tokens counted locally: the provider reported none (e.g. an abandoned stream).",
    )
    price_estimated = models.BooleanField(
        default=False, db_default=False, help_text="The model had no price: the cost is a conservative estimate."
    )
    # Attribution beyond user and feature (see apps.llm.accounting.context and .traces).
    tags = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        db_default=Value([], ArrayField(models.CharField(max_length=100))),
    )
    metadata = models.JSONField(null=True, blank=True, help_text="Key/value pairs the caller attached.")
    subject_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    subject_id = models.CharField(  # noqa: DJ001 (NULL: no subject, as its content type)
        max_length=64, null=True, blank=True, help_text="The object the call was about."
    )
    subject = GenericForeignKey("subject_type", "subject_id")
    trace = models.ForeignKey(
        LLMTrace,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="requests_in_trace",
    )
    span = models.ForeignKey(
        LLMTrace,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="requests_in_span",
    )

    class Meta:
        verbose_name = "LLM request"
        ordering = ["-created_at"]
        permissions = [("view_llmrequest_text", "Can view prompts and answers of LLM requests")]
        indexes = [
            models.Index(fields=["-created_at"], name="llm_request_created"),
            models.Index(fields=["model", "-created_at"], name="llm_request_model"),
            models.Index(fields=["user", "-created_at"], name="llm_request_user"),
            models.Index(fields=["feature", "-created_at"], name="llm_request_feature"),
            # The cache hits of a feature, newest first: the changelist's feature and cached filters.
            # Without it a page reads four misses per hit through the feature index, and its count
            # of up to 10,001 hits was planned as a scan of the whole table (200 ms at 1M calls).
            models.Index(
                fields=["feature", "-created_at"], name="llm_request_feature_cached", condition=Q(cached=True)
            ),
            models.Index(fields=["status", "-created_at"], name="llm_request_status"),
            models.Index(fields=["-cost"], name="llm_request_cost", condition=Q(cost__isnull=False)),
            # The admin's search by a provider's request id.
            models.Index(fields=["request_id"], name="llm_request_request_id", condition=~Q(request_id="")),
            GinIndex(fields=["tags"], name="llm_request_tags"),
            GinIndex(fields=["metadata"], name="llm_request_metadata", opclasses=["jsonb_path_ops"]),
            models.Index(
                fields=["subject_type", "subject_id"], name="llm_request_subject", condition=Q(subject_id__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.model or self.model_requested} {self.status}"
