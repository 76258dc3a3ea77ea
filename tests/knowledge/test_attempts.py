"""Every document ends: a failure of any kind fails it with the reason, and a document that keeps
not finishing is given up after ``MAX_ATTEMPTS`` claims instead of re-sent by the sweep forever."""

from __future__ import annotations

import inspect
import json
import textwrap

import pytest

from apps.knowledge.documents import add_document
from apps.knowledge.embedding_models import OPENAI_SMALL
from apps.knowledge.models import Document
from apps.knowledge.pipeline import claim, process_document, reprocess, stale_documents
from apps.llm import errors
from apps.llm.testing.simulator import EMBEDDINGS
from apps.llm.transport.retry import RetryPolicy

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

TEXT = textwrap.dedent(inspect.getdoc(json))


def long_ago(document: Document) -> None:
    """Its claim is past the processing timeout: as if its worker had been killed."""
    Document.objects.filter(pk=document.pk).update(processing_started_at=document.created_at.replace(year=2000))


def test_a_document_whose_worker_never_finishes_is_given_up_after_max_attempts(settings, make_client):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "MAX_ATTEMPTS": 3}
    document = add_document(name="json.md", data=TEXT.encode())
    for attempt in range(1, 4):
        taken = claim(document.pk)  # a worker takes it...
        assert taken is not None and taken.attempts == attempt
        long_ago(taken)  # ...and is killed mid-way
        assert document.pk in stale_documents()
    done = process_document(document.pk, client=make_client())
    assert done is None  # not processed a fourth time
    document.refresh_from_db()
    assert document.status == "failed" and document.attempts == 3
    assert document.error_message == "Gave up after 3 attempts (it was still processing at the timeout)"
    assert document.pk not in stale_documents() and document.chunks.count() == 0


def test_reprocessing_starts_the_count_again(settings, make_client):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "MAX_ATTEMPTS": 1}
    document = add_document(name="json.md", data=TEXT.encode())
    long_ago(claim(document.pk))
    assert process_document(document.pk, client=make_client()) is None
    assert Document.objects.get(pk=document.pk).status == "failed"
    assert reprocess(Document.objects.filter(pk=document.pk)) == 1
    assert process_document(document.pk, client=make_client()).status == "ready"


def test_an_unexpected_error_fails_the_document_with_the_reason(make_client):
    document = add_document(name="json.md", data=TEXT.encode())
    document.file.delete(save=False)  # the stored file is gone (a volume not mounted, a cleanup)
    done = process_document(document.pk, client=make_client())
    assert done.status == "failed"
    assert done.error_message.startswith("Unexpected error while reading the file: FileNotFoundError: ")
    assert document.pk not in stale_documents()


def test_a_provider_refusal_fails_the_document_with_the_reason(settings, make_client, sim):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBEDDING_MODEL": OPENAI_SMALL.name}
    sim.fail_next(EMBEDDINGS, status=400, message="input is not allowed")
    document = add_document(name="json.md", data=TEXT.encode())
    done = process_document(document.pk, client=make_client(sim, retry=RetryPolicy(max_attempts=1)))
    assert done.status == "failed" and "input is not allowed" in done.error_message
    assert done.chunks.count() == 0


def test_a_provider_outage_puts_it_back_to_pending_without_spending_an_attempt(settings, make_client, sim):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "EMBEDDING_MODEL": OPENAI_SMALL.name, "MAX_ATTEMPTS": 1}
    client = make_client(sim, retry=RetryPolicy(max_attempts=1))
    document = add_document(name="json.md", data=TEXT.encode())
    sim.fail_next(EMBEDDINGS, status=503)
    with pytest.raises(errors.LLMError) as info:
        process_document(document.pk, client=client)
    assert info.value.retryable
    document.refresh_from_db()
    assert document.status == "pending" and document.attempts == 0
    assert document.error_message.startswith("Will retry: ")
    assert process_document(document.pk, client=client).status == "ready"  # the actor's retry
