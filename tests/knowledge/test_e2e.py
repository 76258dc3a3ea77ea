"""Real worker processes on the real Postgres broker: upload to search, and a worker killed mid-way."""

from __future__ import annotations

import inspect
import json
import signal
import textwrap
import uuid

import dramatiq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from dramatiq.message import Message
from dramatiq_postgres import PostgresBroker

from apps.knowledge import pipeline
from apps.knowledge.models import Chunk, Document
from apps.knowledge.search import search
from apps.knowledge.tasks import QUEUE, process_document_actor
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "OPENAI_API_KEY": "",
        "OPENROUTER_API_KEY": "",
        "LLM_BASE_URL": "",
        "LLM_REQUEST_LOG": "sync",
        **extra,
    }


def forward_queued_messages(database_url: str) -> int:
    """Move what the upload enqueued (on the tests' stub broker) to the real Postgres broker."""
    stub = dramatiq.get_broker()
    queue = stub.queues[QUEUE]
    broker = PostgresBroker(url=database_url, results=False)
    moved = 0
    try:
        while not queue.empty():
            broker.enqueue(Message.decode(queue.get_nowait()))
            moved += 1
    finally:
        broker.close()
    return moved


@pytest.fixture
def uploaded_files():
    yield
    for document in Document.objects.all():
        document.file.delete(save=False)


def test_upload_through_the_admin_then_a_worker_embeds_it_and_search_finds_it(
    admin_client, test_database_url, start_process, uploaded_files, make_client
):
    text = textwrap.dedent(inspect.getdoc(json))
    upload = SimpleUploadedFile(f"json-{uuid.uuid4().hex[:6]}.md", text.encode(), content_type="text/markdown")
    response = admin_client.post(
        reverse("admin:knowledge_document_upload"), {"files": [upload]}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200 and response.json()["results"][0]["ok"], response.content
    document = Document.objects.get()
    assert forward_queued_messages(test_database_url) == 1

    worker = start_process(
        "rundramatiq",
        "--processes",
        "1",
        "--threads",
        "1",
        "--queues",
        QUEUE,
        env=worker_env(test_database_url),
        name="knowledge-worker",
    )
    wait_for(
        lambda: Document.objects.get(pk=document.pk).status in ("ready", "failed") or worker.popen.poll(),
        timeout=120,
        what="the worker to process the upload",
    )
    document.refresh_from_db()
    assert document.status == "ready", (document.error_message, worker.output())
    client = make_client(recorders=[])
    hits = search("How do I turn Python objects into a JSON string?", k=3, client=client)
    assert hits[0].document_id == document.pk


def test_a_worker_killed_mid_document_leaves_nothing_half_written(
    test_database_url, start_process, uploaded_files, settings, make_sim, make_client
):
    sim = make_sim(latency=0.4)
    knowledge = {"EMBEDDING_MODEL": "text-embedding-3-small", "CHUNK_TOKENS": 48, "CHUNK_OVERLAP": 8, "EMBED_BATCH": 4}
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, **knowledge}
    client = make_client(sim, key="sk-test-kill-000000", recorders=[SyncDatabaseRecorder()])
    text = "\n\n".join(textwrap.dedent(inspect.getdoc(m) or "") for m in (json, inspect, textwrap))
    from apps.knowledge.documents import add_document

    document = add_document(name="stdlib.md", data=text.encode())
    first = pipeline.process_document(document.pk, client=client)
    assert first.status == "ready" and first.chunk_count > 3 * 4
    before = sorted(Chunk.objects.filter(document=document).values_list("pk", "index"))

    # Reprocess in a real worker, and kill it while it is embedding. It chunks smaller, so that no
    # chunk's text is stored already (those would take their stored vectors, not an embedding call).
    pipeline.reprocess(Document.objects.filter(pk=document.pk))
    broker = PostgresBroker(url=test_database_url, results=False)
    broker.enqueue(process_document_actor.message(document.pk))
    broker.close()
    env = worker_env(
        test_database_url,
        OPENAI_API_KEY="sk-test-kill-000000",
        OPENAI_BASE_URL=sim.base_url,
        KNOWLEDGE_EMBEDDING_MODEL="text-embedding-3-small",
        KNOWLEDGE_CHUNK_TOKENS="40",
        KNOWLEDGE_CHUNK_OVERLAP="8",
        KNOWLEDGE_EMBED_BATCH="4",
    )
    worker = start_process(
        "rundramatiq", "--processes", "1", "--threads", "1", "--queues", QUEUE, env=env, name="doomed-worker"
    )
    wait_for(
        lambda: Document.objects.get(pk=document.pk).chunks_done > 0, timeout=120, what="the worker to report progress"
    )
    worker.stop(signal.SIGKILL)

    killed = Document.objects.get(pk=document.pk)
    assert killed.status == "processing" and 0 < killed.chunks_done < killed.chunk_count
    assert sorted(Chunk.objects.filter(document=document).values_list("pk", "index")) == before

    # Past the timeout it counts as stale and is processed again, exactly once.
    Document.objects.filter(pk=document.pk).update(
        processing_started_at=killed.processing_started_at.replace(year=2000)
    )
    assert document.pk in pipeline.stale_documents()
    done = pipeline.process_document(document.pk, client=client)
    assert done.status == "ready" and done.chunk_count == first.chunk_count
    indexes = list(Chunk.objects.filter(document=document).order_by("index").values_list("index", flat=True))
    assert indexes == list(range(done.chunk_count))
