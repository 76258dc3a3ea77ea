"""Deleting raw request-log rows past the retention period (the daily rollups stay)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone


def delete_old_requests(*, days: int, batch_size: int = 10_000, now: datetime | None = None) -> int:
    """Delete ``LLMRequest`` rows older than ``days`` days, ``batch_size`` per transaction.

    Small transactions keep locks and WAL bursts short on a large, busy table.
    """
    from apps.llm.models import LLMRequest

    cutoff = (now or timezone.now()) - timedelta(days=days)
    table = LLMRequest._meta.db_table
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE created_at < %s LIMIT %s)",
                [cutoff, batch_size],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch_size:
                return deleted
