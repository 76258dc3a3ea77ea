"""Documents with a lifecycle: deleting one removes its chunks and its file; a changed upload of the
same name is a new version that replaces the old one when it is ready, the old one searchable
until then; unchanged chunks keep their vectors, so an edit costs the chunks it touched."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.knowledge.documents import add_document
from apps.knowledge.embedding_models import OPENAI_SMALL
from apps.knowledge.models import Chunk, Document
from apps.knowledge.pipeline import process_document
from apps.knowledge.search import search
from apps.llm.testing.simulator import EMBEDDINGS

pytestmark = [pytest.mark.usefixtures("media_in_tmp")]

TOPICS = [
    ("Onboarding", "badge", "A new colleague collects a badge from reception on the first morning."),
    ("Travel", "itinerary", "Book trains through the portal and attach the itinerary to the expense claim."),
    ("Security", "passphrase", "Every laptop is encrypted and unlocked with a passphrase of five words or more."),
    ("Leave", "sabbatical", "After five years anyone may take a sabbatical of up to three months, unpaid."),
    ("Equipment", "monitor", "Ask the service desk for a second monitor, a headset or a standing desk."),
    ("Expenses", "receipt", "Photograph every receipt; claims without one are paid only after approval."),
]


def handbook(edited: str | None = None) -> str:
    """Six sections of a paragraph each (one chunk each at CHUNK_TOKENS=48); ``edited`` replaces
    the first sentence of the Security section."""
    sections = []
    for title, _, first in TOPICS:
        opening = edited if edited and title == "Security" else first
        sections.append(f"## {title}\n\n{opening} Questions about {title.lower()} go to the people team.")
    return "\n\n".join(sections)


@pytest.fixture
def remote(settings, make_client, sim):
    """Embeddings from the simulator, a new client (and so an empty embedding cache) per call:
    whatever is not embedded again is the pipeline's doing, not a cache's."""
    settings.KNOWLEDGE = {
        **settings.KNOWLEDGE,
        "EMBEDDING_MODEL": OPENAI_SMALL.name,
        "CHUNK_TOKENS": 48,
        "CHUNK_OVERLAP": 8,
    }
    return lambda: make_client(sim)


def embedded_inputs(sim) -> int:
    return sum(len(r.json["input"]) for r in sim.requests_for(EMBEDDINGS))


def keyword_hits(query: str) -> set[int]:
    return {hit.document_id for hit in search(query, k=10, mode="keyword")}


@pytest.mark.django_db
def test_deleting_a_document_removes_its_chunks_and_its_file(remote, django_capture_on_commit_callbacks):
    document = process_document(add_document(name="handbook.md", data=handbook().encode()).pk, client=remote())
    storage, name = document.file.storage, document.file.name
    assert document.chunks.exists() and storage.exists(name)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        Document.objects.filter(pk=document.pk).delete()
        raise RuntimeError("rolled back")
    assert storage.exists(name) and Chunk.objects.filter(document_id=document.pk).exists()  # nothing lost

    with django_capture_on_commit_callbacks(execute=True):
        Document.objects.filter(pk=document.pk).delete()  # what the admin's delete action does
    assert not Chunk.objects.filter(document_id=document.pk).exists()
    assert not storage.exists(name)


@pytest.mark.django_db(transaction=True)
def test_a_changed_upload_replaces_the_old_version_when_ready_and_embeds_only_the_edit(remote, sim):
    old = process_document(add_document(name="handbook.md", data=handbook().encode()).pk, client=remote())
    assert old.status == "ready" and old.version == 1 and old.chunk_count == len(TOPICS)
    assert embedded_inputs(sim) == old.chunk_count
    old_vectors = {c.text: list(c.embedding) for c in old.chunks.all()}

    edit = "Every laptop is encrypted at rest and unlocked with a fingerprint or a hardware key."
    new = add_document(name="handbook.md", data=handbook(edited=edit).encode())
    assert (new.version, new.title, new.source_name) == (2, old.title, "handbook.md")
    assert keyword_hits("passphrase") == {old.pk} and keyword_hits("fingerprint") == set()

    seen_while_embedding: list[set[int]] = []

    def search_meanwhile(request) -> float:
        # Runs in the simulator's thread while the pipeline waits for the edit's embedding.
        from django.db import connection

        seen_while_embedding.append(keyword_hits("passphrase") | keyword_hits("sabbatical"))
        connection.close()
        return 0.0

    sim.latency = search_meanwhile
    sim.reset()
    done = process_document(new.pk, client=remote())

    assert seen_while_embedding == [{old.pk}]  # the old version, searchable until the new is ready
    assert done.status == "ready" and done.chunk_count == old.chunk_count
    assert embedded_inputs(sim) == 1  # one paragraph edited: one chunk embedded, not six
    assert not Document.objects.filter(pk=old.pk).exists()  # replaced, in the same transaction
    assert not old.file.storage.exists(old.file.name)
    assert keyword_hits("fingerprint") == {done.pk} and keyword_hits("passphrase") == set()
    assert keyword_hits("sabbatical") == {done.pk}  # exactly one version of the unchanged text
    reused = {c.text: list(c.embedding) for c in done.chunks.all() if c.text in old_vectors}
    assert len(reused) == old.chunk_count - 1 and all(reused[t] == old_vectors[t] for t in reused)


@pytest.mark.django_db
def test_a_new_version_that_fails_leaves_the_old_one_in_place(remote):
    old = process_document(add_document(name="handbook.md", data=handbook().encode()).pk, client=remote())
    broken = process_document(add_document(name="handbook.md", data=b"\n\n   \n").pk, client=remote())
    assert broken.status == "failed" and broken.version == 2 and "no text" in broken.error_message
    assert Document.objects.get(pk=old.pk).status == "ready" and keyword_hits("sabbatical") == {old.pk}


@pytest.mark.django_db
def test_a_later_version_ready_first_replaces_every_earlier_one(remote, django_capture_on_commit_callbacks):
    first = process_document(add_document(name="handbook.md", data=handbook().encode()).pk, client=remote())
    second = add_document(name="handbook.md", data=handbook(edited="Laptops lock after five minutes.").encode())
    third = add_document(name="handbook.md", data=handbook(edited="Laptops lock after one minute.").encode())
    assert (second.version, third.version) == (2, 3)
    with django_capture_on_commit_callbacks(execute=True):
        assert process_document(third.pk, client=remote()).status == "ready"
    # The pending second version is obsolete: gone with the first, files included.
    assert process_document(second.pk, client=remote()) is None
    assert list(Document.objects.values_list("pk", flat=True)) == [third.pk]
    assert not first.file.storage.exists(first.file.name) and not second.file.storage.exists(second.file.name)
    assert keyword_hits("minute") == {third.pk} and keyword_hits("minutes") == {third.pk}


@pytest.mark.django_db
def test_an_earlier_version_is_never_stored_over_a_later_ready_one(remote):
    # The race the store guards against: the later version became ready while the earlier one's
    # row was not visible to its transaction (so it was not replaced), and is processed after.
    earlier = add_document(name="handbook.md", data=handbook().encode())
    later = add_document(name="handbook.md", data=handbook(edited="Laptops lock.").encode())
    Document.objects.filter(pk=later.pk).update(status="ready")
    done = process_document(earlier.pk, client=remote())
    assert done.status == "failed" and not done.chunks.exists()
    assert done.error_message == "Superseded by version 2 of handbook.md, uploaded later and ready first; not stored"
    assert Document.objects.get(pk=later.pk).status == "ready"
