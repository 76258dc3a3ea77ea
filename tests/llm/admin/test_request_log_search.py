"""The request log's search, its error-type and provider filters, and its CSV export
(apps/llm/admin/search.py, filters.py, export.py), on real rows written by ``write_records``."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.llm.accounting.records import COLUMN_GROUPS, ERROR, LOG_COLUMNS, REFUSED, SUCCESS, CallRecord
from apps.llm.accounting.request_log import write_records
from apps.llm.admin.filters import seen_providers
from apps.llm.admin.request_log import LLMRequestAdmin
from apps.llm.admin.search import SEARCH_KEYS, search_condition
from apps.llm.models import LLMRequest
from apps.llm.types import Usage
from tests.llm.dashboard.seeded import LOG, START, TODAY

EXPORT = LOG + "export/"
#: Every call fits on one page, so a page's rows are all the matches.
PAGE = 10_000


@pytest.fixture(autouse=True)
def one_page(monkeypatch):
    monkeypatch.setattr(LLMRequestAdmin, "list_per_page", PAGE)


def found(client, **params) -> set:
    response = client.get(LOG, params)
    assert response.status_code == 200
    return {o.pk for o in response.context["cl"].result_list}


def ids(records) -> set:
    return {r.id for r in records}


def call(**fields) -> CallRecord:
    defaults = {"endpoint": "chat", "provider": "openai", "requested_model": "gpt-4o", "model": "gpt-4o"}
    return CallRecord(**(defaults | {"status": SUCCESS} | fields))


# -- search ----------------------------------------------------------------------------------------


def test_request_key_finds_our_id_and_the_providers_exactly(seed, staff_client):
    one = seed.records[7]
    for term in (f"request:{one.request_id}", f"request:{one.id}", str(one.id), one.request_id, f"REQUEST:{one.id}"):
        assert found(staff_client, q=term) == {one.id}, term
    # Exact only: a prefix of a request id is no search of every row.
    assert found(staff_client, q="request:req-1") == set()
    assert found(staff_client, q="request:") == set()


def test_user_key_finds_by_username_email_id_or_none(seed, staff_client):
    user = seed.users[0]
    mine = ids(r for r in seed.records if r.user_id == user.pk)
    assert mine
    for value in (user.username, user.email.upper(), str(user.pk)):
        assert found(staff_client, q=f"user:{value}") == mine, value
    assert found(staff_client, q="user:none") == ids(r for r in seed.records if r.user_id is None)
    assert found(staff_client, q="user:nobody@example.com") == set()


def test_feature_and_model_keys_match_part_of_a_name(seed, staff_client):
    assert found(staff_client, q="feature:SUPPORT") == ids(r for r in seed.records if r.feature == "support.reply")
    assert found(staff_client, q="feature:s") == ids(r for r in seed.records if "s" in r.feature)
    assert found(staff_client, q="feature:nothing-like-it") == set()
    claude = ids(r for r in seed.records if "claude" in r.model)
    assert claude and found(staff_client, q="model:Claude") == claude
    assert found(staff_client, q="model:gpt-4o") == ids(r for r in seed.records if "gpt-4o" in r.model)
    # A bare term is an exact model or feature, as before.
    assert found(staff_client, q="summary") == ids(r for r in seed.records if r.feature == "summary")


def test_error_key_searches_the_type_and_message_of_failures(seed, staff_client):
    timeout = call(
        status=ERROR,
        error_type="LLMTimeoutError",
        error_message="Upstream TIMEOUT after 30 s",
        request_id="gen:42",
        created_at=datetime.now(UTC) - timedelta(hours=1),
    )
    # A success whose error columns hold the word is not a failure: the search reads failures only.
    quiet = call(error_message="timeout retried", created_at=datetime.now(UTC) - timedelta(hours=1))
    write_records([timeout, quiet])
    assert found(staff_client, q="error:timeout") == {timeout.id}
    slow = ids(r for r in seed.records if r.error_message == "slow down")
    assert slow and found(staff_client, q="error:ratelimit") == slow
    assert found(staff_client, q='error:"slow down"') == slow
    budget = ids(r for r in seed.records if r.status == REFUSED)
    assert budget and found(staff_client, q="error:budget") == budget
    # An unknown key is part of the term: a provider's id may hold a colon.
    assert found(staff_client, q="gen:42") == {timeout.id}


def test_terms_combine(seed, staff_client):
    user = seed.users[1]
    expected = ids(r for r in seed.records if r.user_id == user.pk and r.error_message == "slow down")
    assert expected
    assert found(staff_client, q=f"user:{user.username} error:slow") == expected
    both = found(staff_client, q=f"feature:summary model:gpt-4o-mini user:{user.email}")
    assert both == ids(
        r for r in seed.records if r.feature == "summary" and r.model == "gpt-4o-mini" and r.user_id == user.pk
    )


@pytest.mark.parametrize(
    ("term", "index"),
    [
        ("request:req-3-4", "llm_request_request_id"),
        ("feature:support", "llm_request_feature"),
        ("model:claude", "llm_request_model"),
        ("user:user1", "llm_request_user"),
        ("error:slow", "llm_request_status"),
    ],
)
def test_each_key_is_served_by_an_index(seed, term, index):
    """Without sequential scans (too costly at 10M rows), the planner reads each term through its index."""
    condition = search_condition(term)
    assert condition is not None
    queryset = LLMRequest.objects.filter(condition).order_by()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = queryset.explain()
    assert "Seq Scan on llm_llmrequest" not in plan, plan
    # The index is searched (an Index Cond), not read in full with a Filter.
    nodes = [node for node in plan.split("->") if f" {index} " in f"{node} "]
    assert nodes and all("Index Cond" in node for node in nodes), plan


def test_search_help_names_every_key(staff_client, db):
    html = staff_client.get(LOG).content.decode()
    for name in SEARCH_KEYS:
        assert f"{name}:" in html
    assert set(SEARCH_KEYS) >= {"request", "user", "feature", "model", "error"}


# -- filters ---------------------------------------------------------------------------------------


def test_error_type_filter_offers_the_clients_errors_and_selects_by_status(seed, staff_client):
    response = staff_client.get(LOG)
    html = response.content.decode()
    for name in ("RateLimitError", "BudgetExceeded", "ContextLengthExceeded", "LLMTimeoutError"):
        assert f'value="{name}"' in html, name
    assert found(staff_client, error_type="RateLimitError") == ids(
        r for r in seed.records if r.error_type == "RateLimitError"
    )
    refused = ids(r for r in seed.records if r.error_type == "BudgetExceeded")
    assert refused and found(staff_client, error_type="BudgetExceeded") == refused
    # A type the code does not define (an old class, a renamed one) is still found, and offered while selected.
    old = call(status=ERROR, error_type="OldGatewayError", created_at=datetime.now(UTC) - timedelta(minutes=5))
    write_records([old])
    response = staff_client.get(LOG, {"error_type": "OldGatewayError"})
    assert {o.pk for o in response.context["cl"].result_list} == {old.id}
    assert 'value="OldGatewayError"' in response.content.decode()


def test_provider_filter_lists_every_provider_seen_from_the_rollups(seed, staff_client):
    gone = call(provider="retired-gateway", model="m-1", requested_model="m-1", created_at=datetime.now(UTC))
    write_records([gone])
    assert seen_providers() == sorted({r.provider for r in [*seed.records, gone]})
    with CaptureQueriesContext(connection) as captured:
        response = staff_client.get(LOG)
    assert 'value="retired-gateway"' in response.content.decode()
    providers = [q["sql"] for q in captured.captured_queries if "provider" in q["sql"] and "DISTINCT" in q["sql"]]
    assert providers and all("llm_llmusagebymodel" in sql and "llm_llmrequest" not in sql for sql in providers)
    assert found(staff_client, provider="retired-gateway") == {gone.id}
    assert found(staff_client, provider="openrouter") == ids(r for r in seed.records if r.provider == "openrouter")


# -- CSV export ------------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def as_dicts(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


TEXT = {"prompt", "response", "tool_calls"}
MONEY = {"cost", "provider_cost", "saved_cost"}


def test_export_streams_the_filtered_calls_with_exact_amounts(seed, staff_client):
    user = seed.users[0]
    params = {"model": "gpt-4o-mini", "q": f"user:{user.username}", "created_at_from": START.isoformat()}
    response = staff_client.get(EXPORT, {**params, "p": "3"})  # the page number is no filter
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="llm-requests-')
    rows = read_csv(response)
    # Every column of the log once, in the detail page's order, amounts in dollars (a superuser: the text too).
    assert rows[0] == [f"{c}_usd" if c in MONEY else c for cs in COLUMN_GROUPS.values() for c in cs]
    assert sorted(rows[0]) == sorted(f"{c}_usd" if c in MONEY else c for c in LOG_COLUMNS)
    expected = sorted(
        (r for r in seed.select(START, TODAY, model="gpt-4o-mini", user_id=user.pk)),
        key=lambda r: r.created_at,
        reverse=True,
    )
    assert expected
    exported = as_dicts(rows)
    assert [d["id"] for d in exported] == [str(r.id) for r in expected]
    for record, line in zip(expected, exported, strict=True):
        for column in MONEY:
            amount = getattr(record, column)
            if amount is None:
                assert line[f"{column}_usd"] == ""
            else:
                # Exact, positional, no trailing zeros (the column has 24 places).
                assert re.fullmatch(r"-?\d+(\.\d*[1-9])?", line[f"{column}_usd"]), line[f"{column}_usd"]
                assert Decimal(line[f"{column}_usd"]) == amount
        assert line["user_id"] == str(user.pk)
        assert line["key_fingerprint"] == "abcdef123456"
        assert datetime.fromisoformat(line["created_at"]) == record.created_at
    # The changelist links to this export with its filters and search, without its page number.
    page = staff_client.get(LOG, {**params, "p": "1"}).content.decode()
    link = re.search(r'href="([^"]*/export/[^"]*)"', page)
    assert link and "q=user%3Auser1" in link.group(1) and "model=gpt-4o-mini" in link.group(1)
    assert "p=" not in link.group(1)


def test_export_is_bounded_and_says_so(seed, staff_client, monkeypatch):
    matching = [r for r in seed.records if r.error_type == "RateLimitError"]
    monkeypatch.setattr(LLMRequestAdmin, "export_max_rows", len(matching))
    rows = read_csv(staff_client.get(EXPORT, {"error_type": "RateLimitError"}))
    assert len(rows) == 1 + len(matching) and not rows[-1][0].startswith("#")

    monkeypatch.setattr(LLMRequestAdmin, "export_max_rows", 5)
    with CaptureQueriesContext(connection) as captured:
        rows = read_csv(staff_client.get(EXPORT))
    assert len(rows) == 1 + 5 + 1
    assert rows[-1] == ["# cut at 5 rows: more calls match; narrow the filters (e.g. the days) for the rest"]
    newest = sorted(seed.records, key=lambda r: r.created_at, reverse=True)[:5]
    assert [row[0] for row in rows[1:-1]] == [str(r.id) for r in newest]
    # The database stops after the bound, whatever the log holds.
    assert any("LIMIT 6" in q["sql"] for q in captured.captured_queries)


def test_export_text_needs_its_permission_and_the_log_needs_view(seed, staff_client, django_user_model):
    viewer = django_user_model.objects.create_user(username="viewer", email="v@example.com", password="x")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_llmrequest"))
    as_viewer = Client()
    as_viewer.force_login(viewer)
    answered = next(r for r in seed.records if r.response_text)
    params = {"q": f"request:{answered.request_id}"}

    plain = read_csv(as_viewer.get(EXPORT, params))
    assert not TEXT & set(plain[0]) and len(plain) == 2
    body = "\n".join(",".join(row) for row in plain)
    assert "question" not in body and "Be brief" not in body

    # A superuser holds every permission; so does anyone granted the text permission.
    for client in (staff_client, _granted(viewer)):
        full = as_dicts(read_csv(client.get(EXPORT, params)))
        assert len(full) == 1 and "Be brief." in full[0]["prompt"] and full[0]["response"] == answered.response_text

    nobody = django_user_model.objects.create_user(username="nobody", email="n@example.com", password="x")
    nobody.is_staff = True
    nobody.save()
    as_nobody = Client()
    as_nobody.force_login(nobody)
    assert as_nobody.get(EXPORT).status_code == 403
    assert Client().get(EXPORT).status_code == 302  # to the login page


def _granted(user) -> Client:
    permission, _ = Permission.objects.get_or_create(
        codename="view_llmrequest_text",
        content_type=ContentType.objects.get_for_model(LLMRequest),
        defaults={"name": "Can view prompts and answers of LLM requests"},
    )
    user.user_permissions.add(permission)
    client = Client()
    client.force_login(user)
    return client


def test_export_text_cells_never_run_as_formulas(db, staff_client):
    record = call(feature="=HYPERLINK(1)", error_message="-1", created_at=datetime.now(UTC), usage=Usage())
    write_records([record])
    (line,) = as_dicts(read_csv(staff_client.get(EXPORT, {"q": f"request:{record.id}"})))
    assert line["feature"] == "'=HYPERLINK(1)" and line["error_message"] == "'-1"


def test_export_refuses_a_querystring_it_cannot_use(db, staff_client):
    assert staff_client.get(EXPORT, {"created_at__year": "99999"}).status_code == 400
