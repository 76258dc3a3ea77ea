"""Ingestion in groups: embedding calls span documents, writes are batched, and each document is
still stored whole, once, and only under its own lease."""

from __future__ import annotations

import inspect
import io
import math
import textwrap
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from apps.knowledge.documents import add_document
from apps.knowledge.embedding_models import OPENAI_SMALL
from apps.knowledge.models import Chunk, Document
from apps.knowledge.pipeline import process_document, process_documents
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.models import LLMRequest
from apps.llm.testing.simulator import EMBEDDINGS

pytestmark = [pytest.mark.usefixtures("media_in_tmp")]

MODULES = [math, textwrap, inspect, io, Counter, timedelta, Decimal, Sum]


def small_texts(n: int) -> list[str]:
    """``n`` distinct short documents (a sentence or a few: one chunk or two each)."""
    docs = [textwrap.dedent(inspect.getdoc(m) or "") for m in MODULES]
    return [f"Note {i}.\n\n{docs[i % len(docs)][: 200 + 40 * i]}" for i in range(n)]


@pytest.fixture
def remote(settings, make_client, sim):
    settings.KNOWLEDGE = {
        **settings.KNOWLEDGE,
        "EMBEDDING_MODEL": OPENAI_SMALL.name,
        "CHUNK_TOKENS": 64,
        "CHUNK_OVERLAP": 8,
        "EMBED_BATCH": 8,
    }
    return make_client(sim, recorders=[SyncDatabaseRecorder()])


@pytest.mark.django_db
def test_ingest_wait_fills_each_embedding_call_with_chunks_of_several_documents(remote, sim, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i, text in enumerate(small_texts(12)):
        (folder / f"note-{i:02d}.md").write_text(text)
    out = io.StringIO()
    call_command("ingest_documents", str(folder), wait=True, client=remote, stdout=out, stderr=out)

    documents = list(Document.objects.all())
    assert len(documents) == 12 and {d.status for d in documents} == {"ready"}, out.getvalue()
    chunks = Chunk.objects.count()
    requests = sim.requests_for(EMBEDDINGS)
    # ceil(chunks / EMBED_BATCH) calls for the whole folder, not one (or more) per document.
    assert len(requests) == math.ceil(chunks / 8) < len(documents)
    assert [len(r.json["input"]) for r in requests[:-1]] == [8] * (len(requests) - 1)
    stored = dict(Chunk.objects.values_list("text", "document_id"))
    owners = [{stored[text] for text in r.json["input"]} for r in requests]
    assert max(len(o) for o in owners) > 1  # a call spans documents
    assert sum(len(r.json["input"]) for r in requests) == chunks  # every chunk embedded once
    # The cost of a shared call is split between its documents, exactly.
    logged = LLMRequest.objects.filter(feature="knowledge.embed").aggregate(cost=Sum("cost"))["cost"]
    assert logged > 0 and sum(d.embedding_cost for d in documents) == logged
    for document in documents:  # whole documents: every index once, offsets into its own text
        indexes = sorted(document.chunks.values_list("index", flat=True))
        assert indexes == list(range(document.chunk_count)) and document.chunks_done == document.chunk_count


@pytest.mark.django_db
def test_a_groups_chunks_are_embedded_longest_first_across_documents(remote, sim):
    # Each call holds chunks of about one length, whatever document they come from: the local
    # model pads a run to its longest text.
    ids = [add_document(name=f"n{i}.md", data=t.encode(), enqueue=False).pk for i, t in enumerate(small_texts(12))]
    process_documents(ids, client=remote)
    tokens = dict(Chunk.objects.values_list("text", "token_count"))
    sent = [tokens[text] for r in sim.requests_for(EMBEDDINGS) for text in r.json["input"]]
    assert len(sent) == len(tokens) and sent == sorted(sent, reverse=True)
    owners = dict(Chunk.objects.values_list("text", "document_id"))
    first_call = sim.requests_for(EMBEDDINGS)[0].json["input"]
    assert len({owners[text] for text in first_call}) > 1


@pytest.mark.django_db
def test_the_groups_writes_are_batched(remote):
    ids = [add_document(name=f"n{i}.md", data=t.encode(), enqueue=False).pk for i, t in enumerate(small_texts(12))]
    with CaptureQueriesContext(connection) as queries:
        done = process_documents(ids, client=remote)
    assert [d.pk for d in done] == ids and {d.status for d in done} == {"ready"}
    # The client's own statements (request log, prices) aside:
    ours = [q["sql"] for q in queries.captured_queries if "knowledge_" in q["sql"]]
    inserts = [sql for sql in ours if sql.startswith('INSERT INTO "knowledge_chunk"')]
    assert len(inserts) == 1  # every chunk of the group in one statement, not one per chunk
    assert sum(sql.startswith('DELETE FROM "knowledge_chunk"') for sql in ours) == 1
    # Per group and per embedding call a fixed few statements (claim, extraction results,
    # progress, store): none per document.
    calls = math.ceil(Chunk.objects.count() / 8)
    assert len(ours) <= 2 * calls + 10, "\n".join(ours)


@pytest.mark.django_db
def test_a_worker_takes_pending_documents_along(remote, sim):
    ids = [add_document(name=f"n{i}.md", data=t.encode(), enqueue=False).pk for i, t in enumerate(small_texts(6))]
    first = process_document(ids[0], client=remote, group=True)
    assert first.status == "ready"
    assert set(Document.objects.values_list("status", flat=True)) == {"ready"}
    assert len(sim.requests_for(EMBEDDINGS)) == math.ceil(Chunk.objects.count() / 8)
    assert process_document(ids[1], client=remote, group=True) is None  # its own message: nothing left to do


@pytest.mark.django_db
def test_a_bad_file_fails_alone_and_the_rest_of_its_group_is_stored(remote):
    texts = small_texts(3)
    good = [add_document(name=f"n{i}.md", data=t.encode(), enqueue=False) for i, t in enumerate(texts)]
    bad = add_document(name="empty.txt", data=b"   \n  ", enqueue=False)
    done = {d.pk: d for d in process_documents([good[0].pk, bad.pk, good[1].pk, good[2].pk], client=remote)}
    assert done[bad.pk].status == "failed" and "no text" in done[bad.pk].error_message
    assert all(done[d.pk].status == "ready" and done[d.pk].chunks.count() for d in good)


@pytest.mark.django_db(transaction=True)
def test_a_document_another_worker_took_meanwhile_is_not_stored_by_this_one(remote, sim):
    ids = [add_document(name=f"n{i}.md", data=t.encode(), enqueue=False).pk for i, t in enumerate(small_texts(4))]
    victim = ids[2]
    stolen_at = []

    def another_worker_reclaims(request) -> float:
        # While this worker waits for its first embeddings, the victim's lease is taken over
        # (as if this worker had been too slow), from another connection.
        if not stolen_at:
            from django.db import connection as thread_connection

            row = Document.objects.get(pk=victim)
            stolen_at.append(row.processing_started_at + timedelta(seconds=1))
            Document.objects.filter(pk=victim).update(processing_started_at=stolen_at[0])
            thread_connection.close()
        return 0.0

    sim.latency = another_worker_reclaims
    done = process_documents(ids, client=remote)
    assert [d.pk for d in done] == [ids[0], ids[1], ids[3]] and {d.status for d in done} == {"ready"}
    victim_row = Document.objects.get(pk=victim)
    assert victim_row.status == "processing" and victim_row.processing_started_at == stolen_at[0]
    assert victim_row.chunks.count() == 0  # nothing written under a lease that was not ours
    connection.close()
