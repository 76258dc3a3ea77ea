"""The request log admin (apps/llm/admin/request_log.py): read-only, filtered, never counting a large table."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.llm.accounting.records import REFUSED, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.admin.base import EstimatedCountPaginator
from apps.llm.admin.request_log import STATUS_VARIANTS
from apps.llm.models import LLMRequest
from apps.llm.types import Usage
from tests.llm.dashboard.seeded import LOG, MODELS, START, TODAY

SECRET = "sk-proj-" + "Q1w2E3r4" * 5


def test_request_log_is_read_only(seed, staff_client):
    row = LLMRequest.objects.first()
    assert staff_client.get(LOG + "add/").status_code == 403
    assert staff_client.get(f"{LOG}{row.pk}/delete/").status_code == 403
    assert staff_client.post(f"{LOG}{row.pk}/change/", {"model": "changed"}).status_code == 403
    assert LLMRequest.objects.get(pk=row.pk).model == row.model


def test_request_log_changelist_filters_and_searches(seed, staff_client):
    user = seed.users[0]
    response = staff_client.get(
        LOG,
        {
            "created_at_from": START.isoformat(),
            "created_at_to": TODAY.isoformat(),
            "model": "gpt-4o-mini",
            "user": str(user.pk),
            "status__exact": "success",
        },
    )
    assert response.status_code == 200
    expected = {r.id for r in seed.select(START, TODAY, model="gpt-4o-mini", user_id=user.pk) if r.status == SUCCESS}
    assert {o.pk for o in response.context["cl"].result_list} == expected

    by_email = staff_client.get(LOG, {"user": user.email})
    assert by_email.context["cl"].result_count == sum(r.user_id == user.pk for r in seed.records)
    cached = staff_client.get(LOG, {"cached__exact": "1", "feature": "-"})
    assert cached.context["cl"].result_count == sum(r.cached and r.feature == "" for r in seed.records)

    one = seed.records[5]
    for term in (str(one.id), one.request_id):
        found = staff_client.get(LOG, {"q": term})
        assert [o.pk for o in found.context["cl"].result_list] == [one.id]
    assert staff_client.get(LOG, {"q": "gpt-4o-mini"}).context["cl"].result_count == sum(
        r.model == "gpt-4o-mini" for r in seed.records
    )
    # A substring is not searched (it would read every row).
    assert staff_client.get(LOG, {"q": "gpt-4o-mi"}).context["cl"].result_count == 0


def test_request_log_unfiltered_never_counts_the_table(seed, staff_client, monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE llm_llmrequest")  # what autovacuum keeps current in production
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 50)  # a "large" table here
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG)
    assert response.status_code == 200
    log_queries = [q["sql"] for q in captured.captured_queries if "llm_llmrequest" in q["sql"]]
    assert not [sql for sql in log_queries if "COUNT(" in sql.upper()], log_queries
    assert not [sql for sql in log_queries if "DISTINCT" in sql.upper()], log_queries
    # The page's rows: newest first, one page, by the created_at index.
    rows = response.context["cl"].result_list
    assert [o.pk for o in rows] == [r.id for r in sorted(seed.records, key=lambda r: r.created_at, reverse=True)][:100]
    assert response.context["cl"].paginator.estimated
    assert re.search(r"about\s+\d+", response.content.decode())
    # Filtered: counting stops after exact_limit + 1 rows, then the planner's estimate is used.
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG, {"status__exact": "success"})
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 51" in sql for sql in counts), counts


def test_request_log_small_table_is_counted_exactly_but_bounded(seed, staff_client):
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG)
    assert response.context["cl"].result_count == len(seed.records)
    assert not response.context["cl"].paginator.estimated
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert all("LIMIT" in sql for sql in counts)
    # The filter choices were read without scanning: models and features are all offered.
    html = response.content.decode()
    for _, model in MODELS:
        assert f'value="{model}"' in html


def test_request_log_date_drill_down(seed, staff_client):
    day = TODAY - timedelta(days=2)
    response = staff_client.get(LOG, {"created_at__year": day.year, "created_at__month": day.month})
    hierarchy = response.context["cl"].fast_date_hierarchy
    assert hierarchy["show"] and hierarchy["choices"]
    response = staff_client.get(
        LOG, {"created_at__year": day.year, "created_at__month": day.month, "created_at__day": day.day}
    )
    assert {o.pk for o in response.context["cl"].result_list} == {r.id for r in seed.select(day, day)}


def test_request_detail_shows_the_prompt_and_never_a_key(seed, staff_client):
    record = CallRecord(
        endpoint="chat",
        provider="openai",
        requested_model="gpt-4o",
        model="gpt-4o",
        status=SUCCESS,
        usage=Usage(prompt_tokens=12, completion_tokens=3, total_tokens=15),
        cost=Decimal("0.00004"),
        latency_ms=321.0,
        key_fingerprint="0123456789ab",
        feature="support.reply",
        prompt=[
            {"role": "system", "content": "You are <b>terse</b>."},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        ],
        response_text="4, obviously.",
    )
    write_records([record], store_text=True)
    response = staff_client.get(f"{LOG}{record.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "What is 2+2?" in html and "You are &lt;b&gt;terse&lt;/b&gt;." in html and "4, obviously." in html
    assert "0123456789ab" in html and SECRET not in html and "sk-" not in html

    hidden = CallRecord(endpoint="chat", provider="openai", requested_model="gpt-4o", model="gpt-4o", status=SUCCESS)
    write_records([hidden], store_text=False)
    assert "Not stored" in staff_client.get(f"{LOG}{hidden.id}/change/").content.decode()


def test_refused_calls_have_their_status_filter_and_badge(seed, staff_client):
    response = staff_client.get(LOG)
    html = response.content.decode()
    # The status filter offers every status of the log, refusals included.
    assert re.search(r'<option value="refused"', html)
    refused = staff_client.get(LOG, {"status__exact": "refused"})
    expected = {r.id for r in seed.records if r.status == REFUSED}
    assert expected and {o.pk for o in refused.context["cl"].result_list} == expected
    # A refusal is a warning (orange), an error is red.
    assert STATUS_VARIANTS == {"success": "success", "error": "danger", "refused": "warning"}
    assert "#ffedd5" in refused.content.decode() and "#fee2e2" not in refused.content.decode()


def test_the_drift_filter_selects_calls_whose_provider_cost_differs(seed, staff_client):
    params = {"created_at_from": START.isoformat(), "created_at_to": TODAY.isoformat(), "drift": "1"}
    response = staff_client.get(LOG, params)
    assert response.status_code == 200
    expected = {
        r.id
        for r in seed.select(START, TODAY)
        if r.cost is not None and r.provider_cost is not None and r.cost != r.provider_cost
    }
    assert expected and {o.pk for o in response.context["cl"].result_list} == expected
    # Combined with a model (as the dashboard's links are), and shown with both costs.
    model = "anthropic/claude-3.5-sonnet"
    narrowed = staff_client.get(LOG, {**params, "model": model})
    assert {o.pk for o in narrowed.context["cl"].result_list} == {
        r for r in expected if next(x for x in seed.records if x.id == r).model == model
    }
    assert "(provider: $" in response.content.decode()
