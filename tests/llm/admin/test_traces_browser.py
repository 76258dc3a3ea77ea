"""The trace admin and the request log's search in a real browser: Playwright driving Debian's Chromium
against the live server, with traces made by ``llm_trace`` around real calls to the loopback simulator."""

from __future__ import annotations

import random
import re

import pytest
from django.db import connection
from django.urls import reverse

from apps.llm import LLMError, llm_context, llm_trace
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.admin.formatting import money
from apps.llm.models import LLMRequest, LLMTrace
from apps.llm.testing.routes import CHAT
from apps.llm.transport.retry import RetryPolicy

PASSWORD = "browser-test-password"
TRACES = "/admin/llm/llmtrace/"
LOG = "/admin/llm/llmrequest/"

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def traces(sim, make_client, django_user_model, price_table):
    """Three traces of real calls to the simulator, logged by the real writer:

    * ``v2``: a support reply about a customer's account, tagged ``exp:prompt-v2``: classify, draft
      (with a nested retrieve: an embedding), review; the draft's question asked twice (a cache hit);
    * ``v1``: a support reply tagged ``exp:prompt-v1`` whose draft is rate limited: it ends in error;
    * ``other``: a nightly import without a subject, tagged ``exp:prompt-v1`` too.
    """
    alice = django_user_model.objects.create_user(username="alice", email="alice@example.com")
    customer = django_user_model.objects.create_user(username="acme-customer", email="customer@example.com")
    client = make_client(
        sim,
        recorders=[SyncDatabaseRecorder()],
        retry=RetryPolicy(max_attempts=1, rng=random.Random(0)),  # one try: a 429 is a failed call
    )
    ask = [{"role": "user", "content": "Why was I charged twice this month?"}]
    with llm_context(user=alice, feature="support.reply"):
        with llm_trace("support.reply", subject=customer, tags=["exp:prompt-v2"], metadata={"ticket": 4242}) as v2:
            with llm_trace("classify"):
                client.chat_completion([{"role": "system", "content": "Classify."}, *ask], "gpt-4o-mini")
            with llm_trace("draft"):
                with llm_trace("retrieve"):
                    client.generate_embedding([ask[0]["content"]], model="text-embedding-3-small")
                client.chat_completion(ask, "gpt-4o-mini")
                client.chat_completion(ask, "gpt-4o-mini")  # the same again: the cache answers
            with llm_trace("review"):
                client.chat_completion([{"role": "system", "content": "Review."}, *ask], "gpt-4o-mini")

        with pytest.raises(LLMError), llm_trace("support.reply", subject=customer, tags=["exp:prompt-v1"]) as v1:
            with llm_trace("classify"):
                client.chat_completion([{"role": "system", "content": "Classify."}, *ask], "gpt-4.1-mini")
            with llm_trace("draft"):
                sim.fail_next(CHAT, 1, status=429)
                client.chat_completion([{"role": "user", "content": "Refund me."}], "gpt-4.1-mini")
    with llm_trace("nightly.import", tags=["exp:prompt-v1"]) as other:
        client.chat_completion([{"role": "user", "content": "Summarize the import."}], "gpt-4o-mini")
    return {"v2": v2, "v1": v1, "other": other, "customer": customer}


@pytest.fixture
def page(live_server, browser, django_user_model):
    # An earlier test may have cut this process's connection on the server (the outage tests do).
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    django_user_model.objects.create_superuser(email="browser@example.com", password=PASSWORD, username="browser")
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "browser@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
    return page


#: The change pages the list's rows link to (without the filters Django appends to come back to the list).
ROW_LINKS = """() => [...document.querySelectorAll('#result_list tr.data-row th a')]
    .map(a => a.getAttribute('href').split('?')[0])"""
#: The timeline's rows: kind, depth, label, link, cost, cache hit and status cells.
TIMELINE = """() => [...document.querySelectorAll('#llm-trace-timeline tbody tr')].map(tr => ({
    kind: tr.className.replace('llm-timeline-', ''),
    depth: Number(tr.dataset.depth),
    label: tr.cells[0].innerText.replace('account_tree', '').trim(),
    link: tr.cells[0].querySelector('a')?.getAttribute('href') ?? null,
    cost: tr.querySelector('.llm-timeline-cost').innerText.trim(),
    hits: tr.cells[6].innerText.trim(),
    status: tr.cells[7].innerText.trim().toLowerCase(),
}))"""


def change_url(model: str, pk) -> str:
    return reverse(f"admin:llm_{model}_change", args=[pk])


def links(page) -> set[str]:
    return set(page.evaluate(ROW_LINKS))


def request_links(**filters) -> set[str]:
    return {change_url("llmrequest", pk) for pk in LLMRequest.objects.filter(**filters).values_list("pk", flat=True)}


def search(page, live_server, terms: str) -> None:
    """Type ``terms`` in the request log's search box and submit it, as a person would."""
    page.goto(f"{live_server.url}{LOG}")
    page.fill("#searchbar", terms)
    with page.expect_navigation():
        page.press("#searchbar", "Enter")


def test_trace_list_trace_page_and_request_log_search(live_server, page, traces):
    v2, v1, other = (LLMTrace.objects.get(pk=traces[name].id) for name in ("v2", "v1", "other"))
    assert (v2.status, v1.status, other.status) == ("ok", "error", "ok")  # the seed is what the test needs

    # The trace list: the three roots (never their spans); filtered to support replies without errors.
    page.goto(f"{live_server.url}{TRACES}")
    assert links(page) == {change_url("llmtrace", t.pk) for t in (v2, v1, other)}
    assert "customer@example.com" in page.inner_text("#result_list")  # the subject, shown by name
    page.click("a.filter-open-button")
    page.fill("#filter-form input[name=name]", "support.reply")
    page.check("#filter-form input[name=errors][value=no]")
    with page.expect_navigation():
        page.click("#filter-form button[type=submit] >> nth=0")
    assert "name=support.reply" in page.url and "errors=no" in page.url
    assert links(page) == {change_url("llmtrace", v2.pk)}

    # The trace page: its total cost and a timeline of spans nested by parent and calls under their span.
    with page.expect_navigation():
        page.click(f'#result_list a[href^="{change_url("llmtrace", v2.pk)}"]')
    assert page.inner_text("#llm-trace-cost").strip() == money(v2.cost)
    assert v2.cost > 0 and page.inner_text("#llm-trace-calls").strip() == "5"
    rows = page.evaluate(TIMELINE)
    assert [(r["kind"], r["depth"], r["label"]) for r in rows if r["kind"] == "span"] == [
        ("span", 0, "support.reply"),
        ("span", 1, "classify"),
        ("span", 1, "draft"),
        ("span", 2, "retrieve"),
        ("span", 1, "review"),
    ]
    shape = [(r["kind"], r["depth"]) for r in rows]
    assert shape == [
        ("span", 0),
        ("span", 1),
        ("call", 2),  # classify's
        ("span", 1),
        ("span", 2),
        ("call", 3),  # retrieve's embedding
        ("call", 2),  # the draft
        ("call", 2),  # the draft again: a cache hit
        ("span", 1),
        ("call", 2),  # review's
    ], shape
    calls = [r for r in rows if r["kind"] == "call"]
    assert {r["link"] for r in calls} == request_links(trace_id=v2.pk)
    assert [r["hits"] for r in calls] == ["", "", "", "hit", ""]
    assert all(r["status"].startswith("success") for r in rows if r["kind"] == "call")
    embedding = LLMRequest.objects.get(trace_id=v2.pk, endpoint="embeddings")
    assert calls[1]["label"] == f"embeddings {embedding.model}" and calls[1]["cost"] == money(embedding.cost)

    # A call's link opens that call in the request log.
    with page.expect_navigation():
        page.click(f'#llm-trace-timeline a[href="{change_url("llmrequest", embedding.pk)}"]')
    assert page.url.endswith(change_url("llmrequest", embedding.pk))
    assert "text-embedding-3-small" in page.inner_text("#content")

    # The request log's search box: a tag, a trace; then the error-type filter on top of the tag.
    search(page, live_server, "tag:exp:prompt-v1")
    tagged = request_links(tags__contains=["exp:prompt-v1"])
    assert len(tagged) == 3 and links(page) == tagged  # v1's two calls and the import's
    search(page, live_server, f"trace:{v2.pk}")
    assert links(page) == request_links(trace_id=v2.pk) and len(links(page)) == 5

    search(page, live_server, "tag:exp:prompt-v1")
    page.click("a.filter-open-button")
    page.click("#filter-form select[name=error_type] + .select2 .select2-selection")
    # The dropdown is select2's: its open list's option, clicked (waited for until the list is open).
    page.locator(".select2-container--open .select2-results__option", has_text=re.compile(r"^RateLimitError$")).click()
    assert page.input_value("#filter-form select[name=error_type]") == "RateLimitError"
    with page.expect_navigation():
        page.click("#filter-form button[type=submit] >> nth=0")
    assert "error_type=RateLimitError" in page.url
    failed = request_links(error_type="RateLimitError")
    assert len(failed) == 1 and failed <= request_links(trace_id=v1.pk)
    assert links(page) == failed
    assert "tag%3Aexp%3Aprompt-v1" in page.url or "tag:exp:prompt-v1" in page.url  # the search still applies
    assert page.inner_text("#result_list tr.data-row td.field-status_label").strip().lower() == "error"
