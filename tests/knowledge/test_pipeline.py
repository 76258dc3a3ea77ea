"""Documents in, chunks and vectors out, search and answers: on real Postgres + pgvector."""

from __future__ import annotations

import inspect
import json
import math
import textwrap

import pytest
from django.db import connection, transaction
from django.db.models import Count, Max, Sum

from apps.knowledge.answer import answer
from apps.knowledge.documents import DuplicateDocument, add_document
from apps.knowledge.embedding_models import LOCAL_MINILM, OPENAI_SMALL
from apps.knowledge.extraction import ExtractionError, extract_text
from apps.knowledge.models import Chunk, Document
from apps.knowledge.pipeline import claim, process_document
from apps.knowledge.search import nearest_chunks, search
from apps.llm import errors
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.client import LLMClient
from apps.llm.models import LLMRequest
from apps.llm.testing.simulator import CHAT, EMBEDDINGS
from tests.helpers import DOCUMENTS

JSON_DOC = textwrap.dedent(inspect.getdoc(json))
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]


@pytest.fixture
def local_client(make_client) -> LLMClient:
    """No provider: embeddings run locally, chat has nowhere to go."""
    return make_client(recorders=[SyncDatabaseRecorder()])


def remote_client(make_client, sim) -> LLMClient:
    return make_client(sim, key="sk-test-knowledge-0000", recorders=[SyncDatabaseRecorder()])


def add(name: str, data: bytes | str, **kwargs) -> Document:
    return add_document(name=name, data=data.encode() if isinstance(data, str) else data, **kwargs)


def stdlib_text(*modules) -> str:
    return "\n\n".join(textwrap.dedent(inspect.getdoc(m) or "") for m in modules)


def test_a_document_becomes_chunks_with_vectors(local_client, django_capture_on_commit_callbacks, settings):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        document = add("json.md", JSON_DOC)
    assert document.status == "pending" and len(callbacks) == 1  # the worker is asked once, on commit
    done = process_document(document.pk, client=local_client)
    assert done.status == "ready" and done.error_message == ""
    chunks = list(document.chunks.order_by("index"))
    assert [c.index for c in chunks] == list(range(done.chunk_count)) and done.chunk_count > 1
    assert all(c.token_count <= LOCAL_MINILM.max_input_tokens for c in chunks)
    assert all(len(c.embedding) == 384 and c.embedding_model == LOCAL_MINILM.name for c in chunks)
    text = extract_text("json.md", JSON_DOC.encode(), max_bytes=10**7).text  # offsets are into the extracted text
    assert all(text[c.start_char : c.end_char] == c.text for c in chunks)
    assert done.token_count == sum(c.token_count for c in chunks) and done.embedding_cost == 0
    logged = LLMRequest.objects.filter(feature="knowledge.embed")
    batches = math.ceil(done.chunk_count / settings.KNOWLEDGE["EMBED_BATCH"])
    assert logged.count() == batches and logged.first().provider == "local"


def test_remote_embeddings_are_batched_costed_and_logged(make_client, sim, settings):
    group = 8
    settings.KNOWLEDGE = {
        **settings.KNOWLEDGE,
        "EMBEDDING_MODEL": OPENAI_SMALL.name,
        "CHUNK_TOKENS": 64,
        "CHUNK_OVERLAP": 8,
        "EMBED_BATCH": group,
    }
    client = remote_client(make_client, sim)
    document = add("stdlib.md", stdlib_text(json, inspect, textwrap, math))
    done = process_document(document.pk, client=client)
    assert done.status == "ready" and done.chunk_count > group  # several groups...
    requests = sim.requests_for(EMBEDDINGS)
    assert len(requests) == math.ceil(done.chunk_count / group)  # ...not one request per chunk
    assert sum(len(r.json["input"]) for r in requests) == done.chunk_count
    assert all(c.token_count <= 64 for c in done.chunks.all())
    logged = LLMRequest.objects.filter(feature="knowledge.embed").aggregate(cost=Sum("cost"), n=Count("id"))
    assert logged["n"] == len(requests) and done.embedding_cost == logged["cost"] > 0
    assert len(done.chunks.first().embedding) == 1536


def test_reprocessing_replaces_chunks_in_one_go(local_client):
    document = add("json.md", JSON_DOC)
    first = process_document(document.pk, client=local_client)
    ids_before = set(first.chunks.values_list("pk", flat=True))
    Document.objects.filter(pk=document.pk).update(status="pending")
    second = process_document(document.pk, client=local_client)
    assert second.chunk_count == first.chunk_count == second.chunks.count()
    assert ids_before.isdisjoint(second.chunks.values_list("pk", flat=True))
    assert second.chunks.aggregate(m=Max("index"))["m"] == second.chunk_count - 1


def test_only_one_worker_can_claim_a_document(local_client):
    document = add("json.md", JSON_DOC)
    assert claim(document.pk) is not None
    assert claim(document.pk) is None  # processing, not stale
    assert process_document(document.pk, client=local_client) is None
    Document.objects.filter(pk=document.pk).update(processing_started_at=document.created_at.replace(year=2000))
    assert process_document(document.pk, client=local_client).status == "ready"  # stale: picked up again


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("empty.txt", b"", "empty"),
        ("photo.txt", bytes(range(256)) * 40, "binary"),
        ("scanned.pdf", (DOCUMENTS / "scanned.pdf").read_bytes(), "text layer"),
        ("encrypted.pdf", (DOCUMENTS / "encrypted.pdf").read_bytes(), "encrypted"),
        ("truncated.pdf", (DOCUMENTS / "truncated.pdf").read_bytes(), "damaged pdf"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "not a .docx file"),
    ],
)
def test_bad_input_fails_the_document_with_a_clear_reason(local_client, name, data, fragment):
    document = add(name, data)
    done = process_document(document.pk, client=local_client)
    assert done.status == "failed" and name in done.error_message
    assert fragment in done.error_message.lower()
    assert done.chunks.count() == 0


def test_invalid_utf8_is_repaired_and_said(local_client):
    done = process_document(add("broken.txt", (DOCUMENTS / "broken-utf8.txt").read_bytes()).pk, client=local_client)
    assert done.status == "ready" and any("UTF-8" in w for w in done.warnings)


def test_unsupported_and_oversized_files_are_refused_before_storing(settings):
    with pytest.raises(ExtractionError, match=r"report\.xlsx: unsupported file type \.xlsx; supported: .*\.pdf"):
        add("report.xlsx", b"whatever")
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "MAX_UPLOAD_BYTES": 1000}
    with pytest.raises(ExtractionError, match="over the"):
        add("big.txt", "x" * 2000)
    assert Document.objects.count() == 0


def test_the_same_content_is_not_embedded_twice():
    first = add("a.md", JSON_DOC)
    with pytest.raises(DuplicateDocument, match="already in the knowledge base") as excinfo:
        add("copy-of-a.md", JSON_DOC)
    assert excinfo.value.existing == first and Document.objects.count() == 1


def test_search_finds_the_right_document_and_uses_the_hnsw_index(local_client):
    for name, module in [("json.md", json), ("inspect.md", inspect), ("textwrap.md", textwrap)]:
        process_document(add(name, stdlib_text(module)).pk, client=local_client)
    hits = search("serialize Python objects to a JSON string", k=3, mode="vector", client=local_client)
    assert hits[0].document_title == "json" and hits[0].score > 0.3  # cosine similarity
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert search("wrap long lines of text to a given width", k=1, client=local_client)[0].document_title == "textwrap"
    vector = local_client.generate_embedding("json", model=LOCAL_MINILM.name).embedding
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: show the index is usable at all
        plan = nearest_chunks(vector, LOCAL_MINILM, k=5).explain()
    assert "knowledge_hnsw_minilm" in plan


def test_search_compares_only_vectors_of_the_same_model(local_client):
    document = add("json.md", JSON_DOC)
    process_document(document.pk, client=local_client)
    Chunk.objects.create(
        document=document,
        index=999,
        text="other model",
        token_count=2,
        embedding_model=OPENAI_SMALL.name,
        embedding=[0.01] * 1536,
    )
    hits = search("json", k=50, client=local_client)
    assert hits and all(h.index != 999 for h in hits)


def test_filters_narrow_the_search(local_client):
    a = process_document(add("json.md", stdlib_text(json)).pk, client=local_client)
    b = process_document(add("textwrap.md", stdlib_text(textwrap)).pk, client=local_client)
    hits = search("json", k=5, client=local_client, document_ids=[b.pk])
    assert hits and {h.document_id for h in hits} == {b.pk} and a.pk != b.pk


def test_answer_cites_its_context_and_adds_up_the_cost(make_client, sim, settings):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBEDDING_MODEL": OPENAI_SMALL.name}
    client = remote_client(make_client, sim)
    process_document(add("json.md", JSON_DOC).pk, client=client)
    result = answer("What does json.dumps do?", k=3, model="gpt-4o-mini", client=client)
    prompt = sim.requests_for(CHAT)[-1].json["messages"][1]["content"]
    assert "[1]" in prompt and result.context and result.citations
    assert all(hit.text in prompt for hit in result.context)
    chat = LLMRequest.objects.get(feature="knowledge.answer")
    search_cost = LLMRequest.objects.get(feature="knowledge.search").cost
    assert result.cost == chat.cost + search_cost and result.text == result.response.content


def test_answer_without_a_chat_provider_is_a_clear_error_but_search_works(local_client):
    process_document(add("json.md", JSON_DOC).pk, client=local_client)
    assert search("json", k=1, client=local_client)
    with pytest.raises(errors.NoProviderConfigured, match="OPENROUTER_API_KEY"):
        answer("What is JSON?", client=local_client)
