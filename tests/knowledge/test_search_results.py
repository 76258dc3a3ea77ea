"""Results people can read: documents with their best chunks, marked snippets, positions, links.

On real Postgres (ts_headline, full-text search, pgvector) and the local MiniLM model."""

from __future__ import annotations

import io
import re

import pytest
from django.db import connection

from apps.knowledge.documents import add_document
from apps.knowledge.extraction import extract_text
from apps.knowledge.highlight import HEADLINE_OPTIONS
from apps.knowledge.models import Chunk, Document
from apps.knowledge.pipeline import process_document
from apps.knowledge.positions import describe, heading_at, markdown_headings, page_at
from apps.knowledge.search import MODES, retrieve, retrieve_documents, search, search_documents
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.client import LLMClient
from tests.helpers import DOCUMENTS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

GUIDE = """# Tomato guide

Tomatoes want six hours of sun, rich soil and steady water. Plant them after the last frost, two
feet apart, deeper than they grew in the pot.

## Staking

Stake the plants early and tie the stems loosely with soft string as they grow taller. A cage of
wire mesh holds the heavier varieties better than a single cane.

## Pruning ##

Pinch the suckers that grow between stem and branch so the plant puts its strength in the fruit.
Stop pruning a month before the first autumn frost is expected.
"""

HOSTILE = """Shed notes

The <script>alert("padlock")</script> & <b>brass</b> padlock key hangs by the door of the shed."""

ROTATION = """Credential rotation

Replacing the API credentials of a service regularly limits the damage of a leak. Generate a new
secret, roll it out to every client, watch the logs until nothing uses the old one, then revoke it."""


@pytest.fixture
def local_client(make_client) -> LLMClient:
    return make_client(recorders=[SyncDatabaseRecorder()])


@pytest.fixture
def small_chunks(settings) -> None:
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "CHUNK_TOKENS": 40, "CHUNK_OVERLAP": 0}


def ingest(client: LLMClient, name: str, data: bytes | str) -> Document:
    document = add_document(name=name, data=data.encode() if isinstance(data, str) else data)
    done = process_document(document.pk, client=client)
    assert done is not None and done.status == "ready", done and done.error_message
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")
    return done


# -- positions --------------------------------------------------------------------------------------


def test_markdown_headings_and_the_heading_a_position_is_under():
    headings = markdown_headings(GUIDE)
    assert [title for _, title in headings] == ["Tomato guide", "Staking", "Pruning"]
    assert all(GUIDE[offset] == "#" for offset, _ in headings)
    staking = GUIDE.index("## Staking")
    assert heading_at(headings, 0) == "Tomato guide"
    assert heading_at(headings, staking - 1) == "Tomato guide"
    assert heading_at(headings, staking) == "Staking"
    assert heading_at(headings, len(GUIDE)) == "Pruning"
    assert heading_at([], 10) == ""
    # Not headings: a hash without a space, a hashtag in a sentence, more than six hashes.
    assert markdown_headings("#hashtag\nsee #7\n####### seven\n") == []


def test_page_of_an_offset_and_the_position_said():
    starts = [0, 100, 100, 250]  # page 2 has no text: page 3 starts where it would have
    assert [page_at(starts, offset) for offset in (0, 99, 100, 249, 250, 10_000)] == [1, 1, 3, 3, 4, 4]
    assert page_at(None, 5) is None and page_at([], 5) is None
    assert describe(start_char=10, end_char=90, page_starts=starts) == "page 1"
    assert describe(start_char=90, end_char=260, page_starts=starts, heading="ignored") == "pages 1–4"
    assert describe(start_char=90, end_char=100, page_starts=starts) == "page 1"  # end is exclusive
    assert describe(start_char=0, end_char=5, heading="Staking") == "Staking"
    assert describe(start_char=1200, end_char=2450) == "characters 1,200–2,450"


def test_a_pdf_says_where_each_page_starts_in_the_text():
    extracted = extract_text("heapq.pdf", (DOCUMENTS / "heapq.pdf").read_bytes(), max_bytes=10**7)
    second = extracted.text.index("often very cleverly organised")
    assert extracted.page_starts == [0, second]
    assert extracted.text[second - 2 : second] == "\n\n"
    assert extract_text("a.md", GUIDE.encode(), max_bytes=10**7).page_starts is None


def test_pages_that_do_not_add_up_to_the_text_give_no_page_numbers_rather_than_wrong_ones():
    from apps.knowledge.extraction.pdf import _page_starts

    assert _page_starts(["One  page ", "", "two\r\n"], "One page\n\ntwo") == [0, 10, 10]
    assert _page_starts(["One page", "two"], "One page\n\nthree") is None


def test_a_page_without_text_keeps_the_numbers_of_the_pages_after_it():
    from pypdf import PdfReader, PdfWriter

    heapq = PdfReader(io.BytesIO((DOCUMENTS / "heapq.pdf").read_bytes()))
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO((DOCUMENTS / "scanned.pdf").read_bytes())).pages[0])
    writer.add_page(heapq.pages[0])
    writer.add_page(heapq.pages[1])
    out = io.BytesIO()
    writer.write(out)
    extracted = extract_text("mixed.pdf", out.getvalue(), max_bytes=10**7)
    second = extracted.text.index("often very cleverly organised")
    assert extracted.page_starts == [0, 0, second]
    assert page_at(extracted.page_starts, 0) == 2 and page_at(extracted.page_starts, second + 5) == 3


def test_hits_say_their_page_heading_or_characters(local_client, small_chunks):
    pdf = ingest(local_client, "heapq.pdf", (DOCUMENTS / "heapq.pdf").read_bytes())
    guide = ingest(local_client, "guide.md", GUIDE)
    plain = ingest(local_client, "rotation.txt", ROTATION)
    assert pdf.page_starts is not None and len(pdf.page_starts) == 2 and guide.page_starts is None

    on_page_two = search("Tournaments are a good way to that", k=1, mode="keyword", client=local_client)[0]
    assert on_page_two.document_id == pdf.pk
    assert on_page_two.page == page_at(pdf.page_starts, on_page_two.start_char)
    assert on_page_two.page == 2 and on_page_two.position == "page 2"
    first = Chunk.objects.get(document=pdf, index=0)
    assert search("explanation by François Pinard", k=1, mode="keyword", client=local_client)[0].chunk_id == first.pk
    assert search("explanation by François Pinard", k=1, mode="keyword", client=local_client)[0].page == 1

    staking = search("tie the stems loosely with soft string", k=1, mode="keyword", client=local_client)[0]
    assert staking.document_id == guide.pk and staking.heading == "Staking" and staking.position == "Staking"
    headings = list(Chunk.objects.filter(document=guide).order_by("index").values_list("heading", flat=True))
    assert headings[0] == "Tomato guide" and headings[-1] == "Pruning"  # stored by the pipeline

    rotation = search("revoke the old secret", k=1, mode="keyword", client=local_client)[0]
    assert rotation.document_id == plain.pk and rotation.heading == "" and rotation.page is None
    assert rotation.position == f"characters {rotation.start_char:,}–{rotation.end_char:,}"
    assert rotation.url == f"/admin/knowledge/document/{plain.pk}/change/"
    assert rotation.download_url == f"/admin/knowledge/document/{plain.pk}/download/"


# -- snippets -------------------------------------------------------------------------------------


def test_snippets_mark_the_query_words_by_their_stems(local_client):
    ingest(local_client, "guide.md", GUIDE + "\n\n" + "\n\n".join([ROTATION] * 3))
    hit = search("tomato plants", k=1, mode="keyword", client=local_client, snippets=True)[0]
    assert "<mark>Tomatoes</mark>" in hit.snippet or "<mark>Tomato</mark>" in hit.snippet
    assert "<mark>plants</mark>" in hit.snippet
    # Only the query's words are marked, and a snippet is a passage, not the whole chunk.
    marked = {word.lower() for word in re.findall(r"<mark>(.*?)</mark>", hit.snippet)}
    assert marked <= {"tomato", "tomatoes", "plants", "plant"}
    words = re.sub(r"</?mark>", "", hit.snippet).split()
    assert len(words) <= 2 * HEADLINE_OPTIONS["max_words"] + 2 and len(hit.text.split()) > 150
    # Without asking, no snippet (and no query for it).
    assert search("tomato plants", k=1, mode="keyword", client=local_client)[0].snippet == ""


def test_a_snippet_escapes_the_document_and_marks_only_the_words(local_client):
    ingest(local_client, "shed.md", HOSTILE)
    hit = search("brass padlock", k=1, mode="keyword", client=local_client, snippets=True)[0]
    assert "<script" not in hit.snippet and "<b>" not in hit.snippet
    # The document's own markup is shown as text, not dropped (ts_headline alone would drop tags).
    assert hit.snippet == (
        "Shed notes The &lt;script&gt;alert(&quot;<mark>padlock</mark>&quot;)&lt;/script&gt; &amp; "
        "&lt;b&gt;<mark>brass</mark>&lt;/b&gt; <mark>padlock</mark> key hangs by the door of the shed"
    )
    assert "<mark>padlock</mark>" in hit.snippet and "<mark>brass</mark>" in hit.snippet
    assert re.sub(r"</?mark>", "", hit.snippet).count("<") == 0


def test_a_hit_without_the_query_words_shows_the_start_of_its_chunk(local_client):
    ingest(local_client, "rotation.txt", ROTATION)
    # Found by meaning alone: none of these words is in the text.
    hit = search("cycling passwords periodically", k=1, mode="vector", client=local_client, snippets=True)[0]
    assert "<mark>" not in hit.snippet
    assert hit.snippet.startswith("Credential rotation Replacing the API credentials of a service regularly limits")
    assert hit.snippet.endswith("until nothing uses the old one, then revoke it.")  # 40 words: all of it
    # Nothing but stop words: nothing to mark either.
    hit = search("the of and", k=1, mode="vector", client=local_client, snippets=True)[0]
    assert hit.snippet.startswith("Credential rotation") and "<mark>" not in hit.snippet


# -- documents ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_documents_group_the_chunks_best_first(local_client, small_chunks, mode):
    guide = ingest(local_client, "guide.md", GUIDE)
    shed = ingest(local_client, "shed.md", HOSTILE)
    ingest(local_client, "rotation.txt", ROTATION)
    assert guide.chunk_count > 2

    query = "tomato stems and plants"
    chunks = search(query, k=50, mode=mode, client=local_client)
    documents = search_documents(query, k=10, mode=mode, client=local_client, chunks_per_document=2)

    # Each document once, in the order of its best chunk, with its best chunks in chunk order.
    expected: dict[int, list[int]] = {}
    for hit in chunks:
        expected.setdefault(hit.document_id, [])
        if len(expected[hit.document_id]) < 2:
            expected[hit.document_id].append(hit.chunk_id)
    assert [d.document_id for d in documents] == list(expected)
    assert [[c.chunk_id for c in d.chunks] for d in documents] == list(expected.values())
    assert documents[0].document_id == guide.pk and len(documents[0].chunks) == 2
    assert [d.score for d in documents] == sorted((d.score for d in documents), reverse=True)
    assert all(d.score == d.best.score == d.chunks[0].score for d in documents)
    assert documents[0].url == f"/admin/knowledge/document/{guide.pk}/change/"
    assert all(c.snippet and c.position for d in documents for c in d.chunks)
    if mode != "vector":
        assert "<mark>" in documents[0].best.snippet
    # k counts documents.
    assert [d.document_id for d in search_documents(query, k=1, mode=mode, client=local_client)] == [guide.pk]
    assert shed.pk in {d.document_id for d in documents} or mode == "keyword"


def test_document_results_report_the_mode_and_cost(local_client):
    ingest(local_client, "guide.md", GUIDE)
    results = retrieve_documents("tomato", mode="keyword", client=local_client, snippets=False)
    assert results.mode == "keyword" and results.cost == 0 and results.documents
    assert results.documents[0].best.snippet == ""
    with pytest.raises(ValueError, match="chunks_per_document must be at least 1"):
        retrieve_documents("tomato", chunks_per_document=0, client=local_client)


@pytest.mark.parametrize("mode", MODES)
def test_a_queryset_of_documents_narrows_the_search(local_client, mode):
    pdf = ingest(local_client, "heapq.pdf", (DOCUMENTS / "heapq.pdf").read_bytes())
    guide = ingest(local_client, "guide.md", GUIDE)
    query = "heap tomato"
    everything = {h.document_id for h in search(query, k=20, mode=mode, client=local_client)}
    assert everything == {pdf.pk, guide.pk}
    only_pdfs = Document.objects.filter(mime_type="application/pdf")
    narrowed = retrieve(query, k=20, mode=mode, client=local_client, documents=only_pdfs).hits
    assert narrowed and {h.document_id for h in narrowed} == {pdf.pk}
