from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from apps.llm.accounting.records import SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.accounting.retention import delete_old_requests
from apps.llm.models import LLMRequest, LLMUsageDaily
from apps.llm.types import Usage

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.mark.django_db
def test_old_rows_go_in_batches_and_rollups_stay():
    records = [
        CallRecord(
            endpoint="chat",
            provider="openai",
            requested_model="m",
            model="m",
            status=SUCCESS,
            usage=Usage(total_tokens=10),
            cost=Decimal("0.5"),
            created_at=NOW - timedelta(days=age),
        )
        for age in [1, 5, 29, 31, 45, 60, 100]
    ]
    write_records(records)
    assert delete_old_requests(days=30, batch_size=2, now=NOW) == 4
    assert sorted((NOW - r.created_at).days for r in LLMRequest.objects.all()) == [1, 5, 29]
    totals = LLMUsageDaily.objects.aggregate(n=Sum("requests"), cost=Sum("cost"))
    assert totals == {"n": 7, "cost": Decimal("3.5")}
    assert delete_old_requests(days=30, now=NOW) == 0


def test_upkeep_jobs_are_scheduled():
    from dramatiq_crontab import scheduler

    import apps.llm.tasks  # noqa: F401  (what `manage.py crontab` imports)

    names = {job.name for job in scheduler.get_jobs()}
    assert {"llm.delete_old_requests", "llm.replay_request_spool", "llm.sync_model_pricing"} <= names
