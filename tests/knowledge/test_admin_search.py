"""The admin search page: a labelled query box, advanced options, readable results, its empty and
error states, and the view permission it requires."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.templatetags.static import static
from django.urls import reverse

from apps.knowledge.documents import add_document
from apps.knowledge.embedding_models import OPENAI_SMALL
from apps.knowledge.models import Document
from apps.knowledge.pipeline import process_document
from apps.llm.client import LLMClient
from apps.llm.testing.simulator import EMBEDDINGS, SimResponse
from apps.llm.transport.retry import RetryPolicy

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

URL = "/admin/knowledge/document/search/"

GUIDE = """# Tomato guide

Tomatoes want six hours of sun, rich soil and steady water.

## Staking

Stake the plants early and tie the stems loosely with soft string. The <b>brass</b> hook holds the cane."""


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(email="reader@example.com", username="reader", is_staff=True)


@pytest.fixture
def reader(client, staff):
    staff.user_permissions.add(Permission.objects.get(codename="view_document"))
    client.force_login(staff)
    return client


@pytest.fixture
def guide(make_client) -> Document:
    document = add_document(name="guide.md", data=GUIDE.encode())
    done = process_document(document.pk, client=make_client())
    assert done is not None and done.status == "ready"
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    return done


def test_the_url_is_the_one_linked_from_the_documents_list():
    assert reverse("admin:knowledge_document_search") == URL


def test_staff_without_the_view_permission_get_403(client, staff, guide):
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    assert client.get(URL, {"q": "tomato", "mode": "keyword"}).status_code == 403


def test_staff_with_the_view_permission_get_the_page(reader):
    response = reader.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    # A labelled query box and a button; the options folded under "Advanced".
    assert re.search(r'<label for="id_q">Search the documents</label>', page)
    assert re.search(r'<input type="search" name="q"[^>]*id="id_q"', page)
    assert re.search(r'<button type="submit"[^>]*>Search</button>', page)
    advanced = page[page.index('<details class="knowledge-advanced">') : page.index("</details>")]
    for name in ("mode", "k", "ef_search", "mime_type", "status"):
        assert f'name="{name}"' in advanced and f'<label for="id_{name}">' in advanced
    assert f'href="{static("knowledge/knowledge.css")}"' in page
    assert 'id="search-results"' not in page and 'id="search-empty"' not in page


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_results_are_documents_with_marked_snippets_positions_and_links(reader, guide):
    response = reader.get(URL, {"q": "brass stems", "mode": "keyword"})
    assert response.status_code == 200
    page = response.content.decode()
    results = page[page.index('id="search-results"') :]
    assert f'href="/admin/knowledge/document/{guide.pk}/change/">guide</a>' in results
    assert f'href="/admin/knowledge/document/{guide.pk}/download/"' in results
    assert '<div class="knowledge-position">Tomato guide</div>' in results  # the heading the chunk starts under
    # The query's words marked; the document's own markup shown as text.
    assert "<mark>brass</mark>" in results and "<mark>stems</mark>" in results
    assert "&lt;b&gt;<mark>brass</mark>&lt;/b&gt;" in results
    assert "1 document · keyword search" in page
    # Advanced options were used: the section opens.
    assert '<details class="knowledge-advanced" open>' in page


def test_no_result_says_so(reader, guide):
    response = reader.get(URL, {"q": "zeppelin", "mode": "keyword"})
    page = response.content.decode()
    assert response.status_code == 200 and 'id="search-empty"' in page
    assert "No document matches “zeppelin”." in page and 'id="search-results"' not in page


def test_filters_narrow_the_documents(reader, guide):
    page = reader.get(URL, {"q": "tomato", "mode": "keyword", "mime_type": "application/pdf"}).content.decode()
    assert 'id="search-empty"' in page
    page = reader.get(URL, {"q": "tomato", "mode": "keyword", "mime_type": "text/markdown"}).content.decode()
    assert 'id="search-results"' in page
    page = reader.get(URL, {"q": "tomato", "mode": "keyword", "status": "failed"}).content.decode()
    assert 'id="search-empty"' in page


def test_invalid_options_are_shown_on_the_form(reader):
    page = reader.get(URL, {"q": "tomato", "mode": "fuzzy", "k": "0"}).content.decode()
    assert "Select a valid choice. fuzzy is not one of the available choices." in page
    assert "Ensure this value is greater than or equal to 1." in page
    assert 'id="search-results"' not in page


def test_embedding_provider_down_is_a_message_not_a_500(reader, guide, make_client, sim, settings, monkeypatch):
    # The provider answers every embedding request with 503.
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBEDDING_MODEL": OPENAI_SMALL.name}
    for _ in range(5):
        sim.enqueue(EMBEDDINGS, SimResponse.error(503, "upstream overloaded"))
    down: LLMClient = make_client(sim, key="sk-test-search-page-0000", retry=RetryPolicy(max_attempts=1))
    monkeypatch.setattr("apps.llm.client._default_client", down)

    response = reader.get(URL, {"q": "tomato stakes"})

    assert response.status_code == 200
    page = response.content.decode()
    error = page[page.index('id="knowledge-search-error"') :]
    assert "The query could not be embedded, so the search by meaning failed" in error
    assert "sk-test-search-page-0000" not in page
    assert 'href="?q=tomato+stakes&amp;mode=keyword">Search by words only</a>' in error
    # The way out works: keyword search needs no provider.
    page = reader.get(URL, {"q": "tomato stakes", "mode": "keyword"}).content.decode()
    assert 'id="search-results"' in page and "knowledge-search-error" not in page
