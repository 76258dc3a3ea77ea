"""A document's embedding calls are about it: ``usage_for(document)`` and the admin's "LLM cost" (LLMCostMixin)."""

from __future__ import annotations

import inspect
import json
import math
import textwrap

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from apps.knowledge.documents import add_document
from apps.knowledge.embedding_models import LOCAL_MINILM, OPENAI_SMALL
from apps.knowledge.models import Document
from apps.knowledge.pipeline import process_document
from apps.llm import usage_for
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.admin.formatting import money
from apps.llm.models import LLMRequest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

DOCUMENTS = "/admin/knowledge/document/"
LOG = "/admin/llm/llmrequest/"


def add(name: str, *modules) -> Document:
    text = "\n\n".join(textwrap.dedent(inspect.getdoc(m) or "") for m in modules)
    return add_document(name=name, data=text.encode())


def calls_about(document: Document):
    return LLMRequest.objects.filter(
        subject_type=ContentType.objects.get_for_model(Document), subject_id=str(document.pk)
    )


def log_link(document: Document) -> str:
    type_id = ContentType.objects.get_for_model(Document).pk
    return f"{LOG}?subject_type__id__exact={type_id}&amp;subject_id={document.pk}"


def test_the_local_models_calls_are_the_documents_and_shown_on_its_page(make_client, admin_client, settings):
    client = make_client(recorders=[SyncDatabaseRecorder()])  # no provider: the local model embeds
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBED_BATCH": 4}
    document = add("json.md", json)
    other = add("inspect.md", inspect)
    done = process_document(document.pk, client=client)
    process_document(other.pk, client=client)
    assert done.status == "ready" and done.embedding_model == LOCAL_MINILM.name

    calls = calls_about(done)
    batches = math.ceil(done.chunk_count / 4)
    assert batches > 1 and calls.count() == batches  # every call of the document, and only those
    assert set(calls.values_list("endpoint", "provider", "feature").distinct()) == {
        ("embeddings", "local", "knowledge.embed")
    }
    assert calls_about(other).exists() and not calls_about(other).filter(pk__in=calls).exists()
    stats = usage_for(done)
    logged = calls.aggregate(n=Count("id"), tokens=Sum("total_tokens"), cost=Sum("cost"))
    assert (stats.total_requests, stats.total_tokens, stats.total_cost) == (
        logged["n"],
        logged["tokens"],
        logged["cost"].normalize(),
    )
    assert stats.total_tokens > 0 and stats.total_cost == done.embedding_cost == 0  # a local model is free

    page = admin_client.get(f"{DOCUMENTS}{done.pk}/change/").content.decode()
    assert "LLM cost" in page
    assert f"{batches} calls · {stats.total_tokens:,} tokens" in page
    assert log_link(done) in page
    # The link opens the request log on exactly those calls.
    log = admin_client.get(LOG, {"subject_type__id__exact": calls[0].subject_type_id, "subject_id": str(done.pk)})
    assert {o.pk for o in log.context["cl"].result_list} == set(calls.values_list("pk", flat=True))


def test_priced_embeddings_cost_per_document_in_the_list(make_client, sim, admin_client, settings):
    settings.KNOWLEDGE = {
        **settings.KNOWLEDGE,
        "EMBEDDING_MODEL": OPENAI_SMALL.name,
        "CHUNK_TOKENS": 64,
        "CHUNK_OVERLAP": 8,
        "EMBED_BATCH": 8,
    }
    client = make_client(sim, key="sk-test-knowledge-cost-0000", recorders=[SyncDatabaseRecorder()])
    documents = [add("json.md", json), add("textwrap.md", textwrap, math)]
    done = [process_document(d.pk, client=client) for d in documents]  # one at a time: batches of one document
    for document in done:
        stats = usage_for(document)
        assert stats.total_cost > 0
        # What the pipeline charged the document is what the log holds about it.
        assert stats.total_cost == document.embedding_cost.normalize()
        assert stats.total_requests == calls_about(document).count() == math.ceil(document.chunk_count / 8)
    assert usage_for(Document.objects.all()).total_cost == sum(d.embedding_cost for d in done)

    response = admin_client.get(DOCUMENTS)
    page = response.content.decode()
    for document in done:
        stats = usage_for(document)
        calls = f"{stats.total_requests} call" + ("s" if stats.total_requests != 1 else "")
        assert f"{money(stats.total_cost)} · {calls} · {stats.total_tokens:,} tokens" in page
        assert log_link(document) in page


def test_the_column_is_read_in_one_query_for_the_page(make_client, admin_client):
    client = make_client(recorders=[SyncDatabaseRecorder()])
    for name, module in (("json.md", json), ("inspect.md", inspect), ("math.md", math)):
        process_document(add(name, module).pk, client=client)
    admin_client.get(DOCUMENTS)  # content types cached
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(DOCUMENTS).content.decode()
    log_queries = [q["sql"] for q in captured.captured_queries if '"llm_llmrequest"' in q["sql"]]
    assert len(log_queries) == 1 and "GROUP BY" in log_queries[0], log_queries
    assert page.count('class="llm-cost"') == 3
