"""Odd or hostile querystring values on every admin page of the project: never a 500.

Every changelist of the project's apps (llm, knowledge, core) and of its user model is fed each
value of ``HOSTILE`` in each parameter it reads: the parameters of every ``list_filter`` entry
(derived from the filters themselves: ``<field>__exact``, ``<field>_from``/``_to``, a
SimpleListFilter's ``parameter_name``...), the search, ordering, paging and date drill-down. So
is the cost dashboard, in every parameter it reads, as a page and as each CSV export. Accepted:
200 (the value used, or ignored with a message), 302 (dropped, with a message on the page it
leads to, which must render), 400. Then one test per case reported in issue 12.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.admin import FieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ERROR_FLAG, IS_POPUP_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Model
from django.test import RequestFactory
from django.urls import reverse

from apps.knowledge.models import Chunk, Document
from apps.llm.admin.base import QuerystringGuard
from apps.llm.admin.dashboard import EXPORTS
from apps.llm.dashboard import rollup_today
from apps.llm.dashboard.filters import MAX_DATE, MIN_DATE
from apps.llm.models import Budget, LLMRequest, PricingSyncRun

pytestmark = pytest.mark.django_db

HOSTILE = [
    "0001-01-01",
    "9999-12-31",
    "2025-02-30",
    "²",
    "٣",
    "\x00",
    "-1",
    "1e309",
    "99999999999999999999",
    "NaN",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "x" * 5000,
    "",
    "[]",
    "None",
]
ACCEPTED = {200, 302, 400}
#: What every changelist reads besides its filters.
CHANGELIST_PARAMETERS = [SEARCH_VAR, ORDER_VAR, PAGE_VAR, "all", "_facets", IS_POPUP_VAR, ERROR_FLAG]
#: Apps whose admins the walk covers (with the user model's, wherever it is registered).
PROJECT_APPS = {"llm", "knowledge", "core"}
DASHBOARD = "/admin/llm/llmusagedaily/dashboard/"
DASHBOARD_PARAMETERS = ["period", "start", "end", "provider", "model", "user", "feature", "export"]


def project_admins() -> list[tuple[type[Model], admin.ModelAdmin]]:
    user_model = get_user_model()
    admins = [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS or model is user_model
    ]
    return sorted(admins, key=lambda pair: pair[0]._meta.label)


ADMINS = project_admins()


def changelist_url(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def filter_parameters(model_admin: admin.ModelAdmin, request) -> dict[str, list[str]]:
    """The querystring parameters of each ``list_filter`` entry, as the filter itself declares them.

    Built as Django's ChangeList builds them, but keeping filters that have no choices to show
    (the ChangeList drops those, their parameters are still read).
    """
    model = model_admin.model
    parameters = {}
    for entry in model_admin.get_list_filter(request):
        if isinstance(entry, (tuple, list)):
            field_path, filter_class = entry
            field = get_fields_from_path(model, field_path)[-1]
            spec = filter_class(field, request, {}, model, model_admin, field_path=field_path)
        elif callable(entry):
            field_path = entry.__name__
            spec = entry(request, {}, model, model_admin)
        else:
            field_path = entry
            field = get_fields_from_path(model, field_path)[-1]
            spec = FieldListFilter.create(field, request, {}, model, model_admin, field_path=field_path)
        parameters[field_path] = [name for name in spec.expected_parameters() if name]
    return parameters


def all_parameters(model_admin: admin.ModelAdmin, request) -> list[str]:
    names = [name for names in filter_parameters(model_admin, request).values() for name in names]
    names += CHANGELIST_PARAMETERS
    if model_admin.date_hierarchy:
        names += [f"{model_admin.date_hierarchy}__{part}" for part in ("year", "month", "day")]
    return list(dict.fromkeys(names))


def superuser_request(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


@pytest.fixture
def site(admin_user) -> None:
    """A few rows in every table the walk lists: demo calls and rollups, a budget, a sync run, a document."""
    call_command("llm_demo", "--calls", "30", "--days", "3", "--seed", "5", "--no-documents", stdout=StringIO())
    Budget.objects.create(name="company", hard_limit=10)
    PricingSyncRun.objects.create(provider="openrouter", trigger="manual", status="success")
    document = Document.objects.create(
        title="report", file="documents/report.txt", content_hash="0" * 64, mime_type="text/plain", status="ready"
    )
    Chunk.objects.create(
        document=document, index=0, text="hello", token_count=1, embedding_model="minilm", embedding=[0.0] * 384
    )


def get(client, url: str, params: dict[str, str]) -> tuple[int, list[str]]:
    """The status of a GET (after one redirect to a page of the same site) and the messages shown."""
    response = client.get(url, params)
    status = response.status_code
    assert status in ACCEPTED, (url, params, status)
    if status == 302:
        response = client.get(response["Location"])
        assert response.status_code == 200, (url, params, response["Location"], response.status_code)
    shown = (
        [str(m) for m in response.context["messages"]] if response.context and "messages" in response.context else []
    )
    return status, shown


def test_the_walk_covers_every_admin_of_the_project():
    labels = {model._meta.label for model, _ in ADMINS}
    assert labels >= {
        "llm.LLMRequest",
        "llm.LLMUsageDaily",
        "llm.Budget",
        "llm.ModelPrice",
        "llm.PricingSyncRun",
        "knowledge.Document",
        "knowledge.Chunk",
        get_user_model()._meta.label,
    }


@pytest.mark.parametrize(("model", "model_admin"), ADMINS, ids=[m._meta.label for m, _ in ADMINS])
def test_no_hostile_value_in_any_filter_is_a_500(model, model_admin, site, admin_client, admin_user):
    request = superuser_request(admin_user)
    per_filter = filter_parameters(model_admin, request)
    # Every list_filter entry reads at least one parameter, and the walk sends each of them.
    assert len(per_filter) == len(model_admin.get_list_filter(request))
    assert all(per_filter.values()), per_filter
    url = changelist_url(model)
    parameters = all_parameters(model_admin, request)
    for name in parameters:
        for value in HOSTILE:
            status, shown = get(admin_client, url, {name: value})
            if "\x00" in value and isinstance(model_admin, QuerystringGuard):
                # Dropped by the project's own admins, and said so.
                assert status == 302 and any(f"“{name}” was ignored" in m for m in shown), (url, name, shown)


@pytest.mark.parametrize("name", DASHBOARD_PARAMETERS)
def test_no_hostile_value_in_any_dashboard_parameter_is_a_500(name, site, admin_client):
    for value in HOSTILE:
        for export in [""] if name == "export" else ["", *EXPORTS]:
            params = {"period": "custom", name: value} | ({"export": export} if export else {})
            response = admin_client.get(DASHBOARD, params)
            assert response.status_code in (200, 400), (params, response.status_code)
            if response.status_code == 200 and params.get("export"):
                assert response["Content-Type"].startswith("text/csv"), params


# -- the cases of the issue, one by one ---------------------------------------------------------------


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_start_in_year_1_is_moved_into_range_on_the_page_and_in_the_export(site, admin_client):
    today = rollup_today()
    response = admin_client.get(DASHBOARD, {"period": "custom", "start": "0001-01-01"})
    assert response.status_code == 200
    filters = response.context["data"].filters
    # Alone, the day is both ends of the range: moved to the first day a filter may name.
    assert (filters.start, filters.end) == (MIN_DATE, MIN_DATE)
    assert [str(m) for m in response.context["messages"]] == [
        f"The start date 0001-01-01 is out of range: {MIN_DATE} is used instead."
    ]
    response = admin_client.get(DASHBOARD, {"period": "custom", "start": "0001-01-01", "end": str(today)})
    filters = response.context["data"].filters
    assert (filters.start, filters.end) == (today - timedelta(days=365), today)
    # Not a custom period: start is not read at all.
    assert admin_client.get(DASHBOARD, {"start": "0001-01-01"}).status_code == 200

    # The export: the same (moved) range; no call is older, so its figures are those asked for.
    response = admin_client.get(DASHBOARD, {"period": "custom", "start": "0001-01-01", "export": "daily"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines()[1].startswith(str(MIN_DATE))
    response = admin_client.get(DASHBOARD, {"period": "custom", "end": "9999-12-31", "export": "daily"})
    assert response.status_code == 200
    assert response.content.decode().splitlines()[1].startswith(str(MAX_DATE))


def test_a_non_ascii_digit_user_is_ignored_with_a_message(site, admin_client):
    response = admin_client.get(DASHBOARD, {"user": "²"})
    assert response.status_code == 200
    assert response.context["data"].filters.user_id is None
    assert [str(m) for m in response.context["messages"]] == ["The user filter was ignored: “²” is not a user id."]
    assert "The user filter was ignored: “²” is not a user id." in response.content.decode()
    # "٣" is a digit Python would read as 3: not a user id either.
    response = admin_client.get(DASHBOARD, {"user": "٣"})
    assert response.context["data"].filters.user_id is None and len(response.context["messages"]) == 1
    assert admin_client.get(DASHBOARD, {"user": "²", "export": "users"}).status_code == 400

    # The request log and the rollups: "²" is no id, so it is looked up as an e-mail address: no calls.
    for url in (reverse("admin:llm_llmrequest_changelist"), reverse("admin:llm_llmusagedaily_changelist")):
        response = admin_client.get(url, {"user": "²"})
        assert response.status_code == 200 and response.context["cl"].result_count == 0, url
        assert admin_client.get(url, {"user": "none"}).context["cl"].result_count > 0


def test_a_nul_byte_in_a_dashboard_filter_is_ignored_with_a_message(site, admin_client):
    response = admin_client.get(DASHBOARD, {"model": "\x00"})
    assert response.status_code == 200 and response.context["data"].filters.model == ""
    assert [str(m) for m in response.context["messages"]] == [
        "The model filter was ignored: it contains a NUL character."
    ]
    # An export is refused rather than computed over every provider.
    response = admin_client.get(DASHBOARD, {"provider": "\x00", "export": "daily"})
    assert response.status_code == 400
    assert response.content.decode() == "The provider filter was ignored: it contains a NUL character."


def test_a_nul_byte_in_an_admin_filter_is_dropped_with_a_message(site, admin_client):
    url = reverse("admin:llm_llmrequest_changelist")
    response = admin_client.get(url, {"model": "gpt\x00", "status__exact": "success"})
    # Redirected to the same filters without the bad one: the address says what is applied.
    assert response.status_code == 302 and response["Location"] == f"{url}?status__exact=success"
    response = admin_client.get(response["Location"])
    assert [str(m) for m in response.context["messages"]] == [
        "The filter “model” was ignored: it contains a NUL character."
    ]
    assert "The filter “model” was ignored: it contains a NUL character." in response.content.decode()
    assert response.context["cl"].result_count == LLMRequest.objects.filter(status="success").count()
    # A stock Django filter (choices of a field) and the search of another app, the same way.
    for url, params in (
        (reverse("admin:llm_budget_changelist"), {"scope__exact": "\x00"}),
        (reverse("admin:knowledge_document_changelist"), {"status__exact": "\x00", "q": "report"}),
    ):
        response = admin_client.get(url, params, follow=True)
        assert response.status_code == 200 and len(response.context["messages"]) == 1, url


def test_days_of_the_request_log_range_filter_are_checked_and_kept_in_range(site, admin_client):
    url = reverse("admin:llm_llmrequest_changelist")
    everything = LLMRequest.objects.count()
    response = admin_client.get(url, {"created_at_to": "9999-12-31"})
    assert response.status_code == 200 and response.context["cl"].result_count == everything
    assert [str(m) for m in response.context["messages"]] == [
        f"The created_at_to date 9999-12-31 is out of range: {MAX_DATE} is used instead."
    ]
    response = admin_client.get(url, {"created_at_from": "²", "created_at_to": str(rollup_today())})
    assert response.status_code == 200 and response.context["cl"].result_count == everything
    assert [str(m) for m in response.context["messages"]] == [
        "The filter “created_at_from” was ignored: “²” is not a date."
    ]
    # Valid days filter as before (ISO, or the site's input format the calendar writes).
    response = admin_client.get(url, {"created_at_from": str(rollup_today() + timedelta(days=1))})
    assert response.context["cl"].result_count == 0 and not list(response.context["messages"])


def test_an_impossible_date_drill_down_is_dropped_with_a_message(site, admin_client):
    for url in (reverse("admin:llm_llmrequest_changelist"), reverse("admin:knowledge_document_changelist")):
        field = "created_at"
        for params in (
            {f"{field}__year": "99999999999999999999"},
            {f"{field}__year": "2025", f"{field}__month": "13"},
            {f"{field}__year": "2025", f"{field}__month": "2", f"{field}__day": "30"},
            {f"{field}__year": "²"},
        ):
            response = admin_client.get(url, params)
            assert response.status_code == 302 and response["Location"] == url, (url, params)
            shown = messages_of(admin_client.get(url))
            assert shown and all("was ignored" in m for m in shown), (url, params, shown)
        today = rollup_today()
        response = admin_client.get(url, {f"{field}__year": today.year, f"{field}__month": today.month})
        assert response.status_code == 200, url


def test_the_users_changelist_renders(admin_client):
    assert admin_client.get(changelist_url(get_user_model())).status_code == 200
