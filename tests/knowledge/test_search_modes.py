"""Keyword, vector and hybrid search: on real Postgres (full-text search, GIN) and the local MiniLM model."""

from __future__ import annotations

import inspect
import json
import textwrap

import pytest
from django.db import connection, transaction

from apps.knowledge.documents import add_document
from apps.knowledge.models import SEARCH_INDEX, Chunk, Document
from apps.knowledge.pipeline import process_document
from apps.knowledge.search import (
    MODES,
    keyword_chunks,
    parse_keyword_query,
    reciprocal_rank_fusion,
    retrieve,
    search,
)
from apps.llm.accounting.request_log import SyncDatabaseRecorder
from apps.llm.client import LLMClient
from apps.llm.models import LLMRequest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

#: Says everything about rotating keys, but never the words of the phrase searched for.
ROTATION = """Credential rotation

Replacing the API credentials of a service regularly limits the damage of a leak. Generate a new
secret, roll it out to every client, watch the logs until nothing uses the old one, then revoke it.
Automate the rotation with a scheduler and alert when a secret is older than ninety days."""

#: About gardening, with the phrase once, in passing.
GARDEN = """Planting tomatoes

Tomatoes want six hours of sun, rich soil and steady water. Stake them early, pinch the suckers
that grow between stem and branch, and mulch to keep the roots cool. The shed's padlock takes the
brass signing key kept under the pot by the door. Harvest when the fruit gives slightly under the thumb."""

#: Means what the phrase seems to mean, without the phrase.
SIGNING = """Release signing

Every release is signed with the project's signing key, an Ed25519 private key kept on a hardware
token. Verify a download with the public key published on the website; a signature that does not
verify means the file was altered. The signing key is never copied to a build server."""

PHRASE = "brass signing key"


@pytest.fixture
def local_client(make_client) -> LLMClient:
    return make_client(recorders=[SyncDatabaseRecorder()])


def ingest(client: LLMClient, **texts: str) -> dict[str, Document]:
    documents = {}
    for name, text in texts.items():
        document = add_document(name=f"{name}.md", data=text.encode())
        documents[name] = process_document(document.pk, client=client)
        assert documents[name].status == "ready"
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")  # the term statistics keyword ranking reads
    return documents


def stdlib(module) -> str:
    return textwrap.dedent(inspect.getdoc(module) or "")


def rank_of(document: Document, hits) -> int | None:
    """The position of ``document``'s best chunk among ``hits`` (0 = first), None if absent."""
    return next((i for i, hit in enumerate(hits) if hit.document_id == document.pk), None)


def test_keyword_mode_finds_an_exact_phrase_that_vector_search_ranks_low(local_client):
    docs = ingest(local_client, signing=SIGNING, rotation=ROTATION, garden=GARDEN, json=stdlib(json))
    query = f'"{PHRASE}"'
    vector = search(query, k=10, mode="vector", client=local_client)
    keyword = search(query, k=10, mode="keyword", client=local_client)
    assert rank_of(docs["signing"], vector) == 0 and rank_of(docs["garden"], vector) > 0  # meaning wins
    # A quoted phrase must appear as a phrase: only the garden chunk holds it.
    assert [h.document_id for h in keyword] == [docs["garden"].pk] and PHRASE in keyword[0].text
    # Unquoted, every chunk with any of the words matches; the one with all three ranks first.
    loose = search(PHRASE, k=10, mode="keyword", client=local_client)
    assert rank_of(docs["garden"], loose) == 0 and len(loose) > 1
    assert [h.score for h in loose] == sorted((h.score for h in loose), reverse=True)


def test_hybrid_ranks_first_the_document_that_matches_both_ways(local_client):
    docs = ingest(local_client, rotation=ROTATION, garden=GARDEN, json=stdlib(json), textwrap=stdlib(textwrap))
    query = "rotate the API credentials and revoke the old secret key"
    vector = search(query, k=10, mode="vector", client=local_client)
    keyword = search(query, k=10, mode="keyword", client=local_client)
    hybrid = search(query, k=10, mode="hybrid", client=local_client)
    assert rank_of(docs["rotation"], vector) == 0 and rank_of(docs["rotation"], keyword) == 0
    assert rank_of(docs["rotation"], hybrid) == 0
    # The phrase query: keyword finds the garden, vector the rotation document; both are in the fusion.
    fused = search(PHRASE, k=10, mode="hybrid", client=local_client)
    assert {docs["garden"].pk, docs["rotation"].pk} <= {h.document_id for h in fused}


def test_the_default_mode_is_hybrid_and_keyword_mode_embeds_nothing(local_client, settings):
    ingest(local_client, rotation=ROTATION, garden=GARDEN)
    assert retrieve("credential rotation", client=local_client).mode == "hybrid"
    assert LLMRequest.objects.filter(feature="knowledge.search").count() == 1
    results = retrieve("credential rotation", mode="keyword", client=local_client)
    assert results.mode == "keyword" and results.hits and results.cost == 0
    assert LLMRequest.objects.filter(feature="knowledge.search").count() == 1  # no embedding call
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "SEARCH_MODE": "keyword"}
    assert retrieve("credential rotation", client=local_client).mode == "keyword"


@pytest.mark.parametrize("mode", ["semantic", "", "HYBRID"])
def test_an_unknown_mode_is_refused_naming_the_modes(local_client, mode):
    with pytest.raises(ValueError, match="'hybrid', 'vector', 'keyword'") as excinfo:
        search("anything", mode=mode, client=local_client)
    assert repr(mode) in str(excinfo.value)
    assert not LLMRequest.objects.exists()  # refused before the query was embedded


def test_an_unknown_default_mode_is_refused_too(local_client, settings):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "SEARCH_MODE": "fuzzy"}
    with pytest.raises(ValueError, match="Unknown search mode 'fuzzy'"):
        search("anything", client=local_client)
    assert set(MODES) == {"hybrid", "vector", "keyword"}


def test_keyword_syntax_excluded_words_and_stop_words(local_client):
    docs = ingest(local_client, rotation=ROTATION, garden=GARDEN)
    both = {h.document_id for h in search("rotation tomatoes", mode="keyword", client=local_client)}
    assert both == {docs["rotation"].pk, docs["garden"].pk}
    without = search("rotation tomatoes -sun", mode="keyword", client=local_client)
    assert {h.document_id for h in without} == {docs["rotation"].pk}
    assert search("the and of", mode="keyword", client=local_client) == []  # only stop words
    assert search("-tomatoes", mode="keyword", client=local_client) == []  # nothing to look for


def test_rare_terms_weigh_more_than_common_ones(local_client):
    ingest(local_client, rotation=ROTATION, garden=GARDEN, json=stdlib(json), textwrap=stdlib(textwrap))
    parsed = parse_keyword_query("the brass tomatoes of the JSON module")
    assert set(parsed.terms) == {"brass", "tomato", "json", "modul"}  # stemmed, stop words dropped
    assert parsed.terms["brass"] > parsed.terms["json"]  # once in the corpus, against many times
    # With room for a single chunk, the candidates are the chunks of the rarest terms only.
    narrow = parse_keyword_query("the brass tomatoes of the JSON module", candidates=1)
    assert narrow.candidates == ("brass",) and set(narrow.terms) == set(parsed.terms)


def test_the_search_vector_is_generated_and_the_gin_index_serves_keyword_queries(local_client):
    docs = ingest(local_client, garden=GARDEN, json=stdlib(json))
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [SEARCH_INDEX])
        (indexdef,) = cursor.fetchone()
    assert "USING gin (search_vector)" in indexdef
    chunk = Chunk.objects.filter(document=docs["garden"]).first()
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM knowledge_chunk WHERE id = %s", [chunk.pk])
        (vector,) = cursor.fetchone()
    assert "'tomato'" in vector and "'brass'" in vector and "'the'" not in vector  # English stemming
    for query in ("brass signing key", f'"{PHRASE}"', "brass -tomatoes"):
        ranking = keyword_chunks(query, k=10).values_list("pk", "score")  # what search() runs
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: show the index is usable at all
            plan = ranking.explain()
        assert f"Bitmap Index Scan on {SEARCH_INDEX}" in plan, plan


def test_filters_apply_to_every_mode(local_client):
    docs = ingest(local_client, rotation=ROTATION, garden=GARDEN)
    for mode in MODES:
        hits = search("key", k=10, mode=mode, client=local_client, document_ids=[docs["garden"].pk])
        assert hits and {h.document_id for h in hits} == {docs["garden"].pk}, mode


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "d"]], k=60, key=str)
    assert [item for item, _ in fused] == ["c", "b", "a", "d"]  # c: 1/63 + 1/61 > b: 1/62 + 1/62 > a: 1/61
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    # A tie goes to the item the first ranking placed higher.
    assert [item for item, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]], k=60, key=str)] == ["x", "y"]
