"""Traces: a named unit of work (a support reply, an upload) and the LLM calls made inside it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models

from apps.llm.models.fields import money_field


class LLMTrace(models.Model):
    """One span of a trace: the trace's root (no parent; its id is the trace's) or a span nested in it.

    The totals count the calls made in the span itself, and, on the root, every call of the
    trace: the request-log writer adds each batch to them.
    """

    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The root span's id (its own, on the root): every span of a trace in one index range.
    trace_id = models.UUIDField(db_index=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="children"
    )
    name = models.CharField(max_length=200)
    subject_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    subject_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 (NULL: no subject)
    subject = GenericForeignKey("subject_type", "subject_id")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    requests = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    cost = money_field(default=0)
    latency_ms_sum = models.FloatField(default=0)

    class Meta:
        verbose_name = "LLM trace"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["-started_at"], name="llm_trace_started", condition=models.Q(parent__isnull=True)),
            models.Index(fields=["name", "-started_at"], name="llm_trace_name"),
            models.Index(fields=["subject_type", "subject_id"], name="llm_trace_subject"),
            models.Index(fields=["-cost"], name="llm_trace_cost", condition=models.Q(parent__isnull=True)),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_root(self) -> bool:
        return self.parent_id is None
