"""Search over the chunks: by meaning (vectors), by words (full-text), or both fused (the default).

- ``vector``: the query's embedding against the chunks', through the embedding model's HNSW index
  (cosine). Finds paraphrases; can miss an exact name, number or phrase.
- ``keyword``: PostgreSQL full-text search on ``Chunk.search_vector`` (a generated ``tsvector`` of
  the text, English stemming and stop words, GIN index ``knowledge_chunk_fts``). A chunk matches
  when it holds any of the query's words; a ``"quoted phrase"`` must appear as a phrase and
  ``-word`` excludes a word (web search syntax). Matches are ranked like BM25: each query term
  counts its ``ts_rank`` (which grows with the term's occurrences and saturates) times its inverse
  document frequency, read from PostgreSQL's own statistics of the column (see
  ``TermStatistics``), so rare words weigh more than common ones. The chunks ranked are those
  holding the query's rarest words, about ``KEYWORD_CANDIDATES`` of them at most; commoner words
  only add to their scores (see ``parse_keyword_query``).
- ``hybrid``: both rankings, ``HYBRID_CANDIDATES`` chunks each, fused by reciprocal rank fusion
  (a chunk scores ``sum(1 / (RRF_K + rank))`` over the rankings that hold it).

``bench/bench_retrieval.py`` measures the three on SciFact (nDCG@10, recall@100, latency).

Results come as chunks (``search``, ``retrieve``) or as documents, each with its best chunks
(``search_documents``, ``retrieve_documents``). Every hit says where it is (``position``: the page
of a PDF, the Markdown heading it is under, or its characters) and links to its document
(``url``); with ``snippets=True`` (the default for documents) it carries a short passage with the
query's words marked (``snippet``: PostgreSQL's ``ts_headline``, HTML-escaped, ``<mark>`` the only
markup).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import reduce
from operator import add, attrgetter, itemgetter
from typing import Any

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db import connections, router, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Cast
from django.urls import reverse
from pgvector.django import CosineDistance, VectorField

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.embedding_models import EmbeddingModel, embedding_model
from apps.knowledge.highlight import HEADLINE_OPTIONS, START, headline_source, marked_html, plain_snippet
from apps.knowledge.models import SEARCH_CONFIG, Chunk, Document
from apps.knowledge.positions import describe, page_at
from apps.llm.client import LLMClient, default_client

MODES = ("hybrid", "vector", "keyword")
#: pgvector's largest ``hnsw.ef_search``; an HNSW scan returns at most ``ef_search`` rows.
MAX_EF_SEARCH = 1000
#: ``search_documents``: chunks ranked per document asked for, to fill the documents.
CHUNKS_PER_DOCUMENT_RANKED = 5
_FIELDS = (
    "id",
    "document_id",
    "document__title",
    "document__page_starts",
    "index",
    "text",
    "start_char",
    "end_char",
    "heading",
)


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    document_title: str
    index: int
    text: str
    #: Higher is better. vector: cosine similarity (1 = same direction); keyword: the BM25-like
    #: rank (unbounded); hybrid: the reciprocal rank fusion score (at most 2 / (RRF_K + 1)).
    score: float
    start_char: int
    end_char: int
    #: The page the chunk starts on (PDFs; None for the other types).
    page: int | None = None
    #: The Markdown heading the chunk starts under ("" if none, or not Markdown).
    heading: str = ""
    #: Where to look, for a reader: "page 3", "pages 3–4", the heading, or "characters 1,200–2,450".
    position: str = ""
    #: HTML: a passage of the chunk with the query's words in ``<mark>``, everything else escaped;
    #: "" unless snippets were asked for.
    snippet: str = ""

    @property
    def url(self) -> str:
        """The document's page in the admin."""
        return reverse("admin:knowledge_document_change", args=[self.document_id])

    @property
    def download_url(self) -> str:
        """The document's original file (permission-checked)."""
        return reverse("admin:knowledge_document_download", args=[self.document_id])


@dataclass(frozen=True)
class SearchResults:
    hits: list[SearchHit]
    #: What embedding the query cost (USD; 0 for the local model and for keyword search, None if unknown).
    cost: Decimal | None
    mode: str = "hybrid"


@dataclass(frozen=True)
class DocumentHit:
    """A document and its chunks that matched, best first (``chunks[0]`` ranked the document)."""

    document_id: int
    document_title: str
    #: The best chunk's score (see ``SearchHit.score``).
    score: float
    chunks: list[SearchHit]

    @property
    def best(self) -> SearchHit:
        return self.chunks[0]

    @property
    def url(self) -> str:
        return self.best.url

    @property
    def download_url(self) -> str:
        return self.best.download_url


@dataclass(frozen=True)
class DocumentResults:
    documents: list[DocumentHit]
    cost: Decimal | None
    mode: str = "hybrid"


def search_mode(mode: str | None) -> str:
    """``mode``, or the ``SEARCH_MODE`` setting; ValueError naming the modes if it is none of them."""
    chosen = mode if mode is not None else knowledge_settings().search_mode
    if chosen not in MODES:
        raise ValueError(f"Unknown search mode {chosen!r}: use one of " + ", ".join(repr(m) for m in MODES))
    return chosen


def search(query: str, k: int = 10, mode: str | None = None, **options: Any) -> list[SearchHit]:
    """The ``k`` chunks that best answer ``query``, best first (see ``retrieve``)."""
    return retrieve(query, k, mode=mode, **options).hits


def search_documents(query: str, k: int = 10, mode: str | None = None, **options: Any) -> list[DocumentHit]:
    """The ``k`` documents that best answer ``query``, best first, each with its best chunks
    (see ``retrieve_documents``)."""
    return retrieve_documents(query, k, mode=mode, **options).documents


def retrieve_documents(
    query: str,
    k: int = 10,
    *,
    chunks_per_document: int = 3,
    snippets: bool = True,
    **options: Any,
) -> DocumentResults:
    """The ``k`` best documents for ``query``: chunks ranked as by ``retrieve`` (same options),
    grouped by document, a document ranked by its best chunk, with up to ``chunks_per_document``
    chunks each, best first.

    ``CHUNKS_PER_DOCUMENT_RANKED`` chunks are ranked per document asked for: fewer than ``k``
    documents come back when the best chunks crowd into fewer documents than that.
    """
    if chunks_per_document < 1:
        raise ValueError("chunks_per_document must be at least 1")
    ranked = retrieve(query, min(k * CHUNKS_PER_DOCUMENT_RANKED, MAX_EF_SEARCH), snippets=False, **options)
    groups: dict[int, list[SearchHit]] = {}
    for hit in ranked.hits:
        chunks = groups.get(hit.document_id)
        if chunks is None:
            if len(groups) == k:
                continue
            chunks = groups[hit.document_id] = []
        if len(chunks) < chunks_per_document:
            chunks.append(hit)
    if snippets:
        marked = snippets_of([hit for chunks in groups.values() for hit in chunks], query)
        groups = {doc: [marked[hit.chunk_id] for hit in chunks] for doc, chunks in groups.items()}
    documents = [
        DocumentHit(document_id=doc, document_title=chunks[0].document_title, score=chunks[0].score, chunks=chunks)
        for doc, chunks in groups.items()
    ]
    return DocumentResults(documents=documents, cost=ranked.cost, mode=ranked.mode)


def retrieve(
    query: str,
    k: int = 10,
    *,
    mode: str | None = None,
    model: str | None = None,
    document_ids: Iterable[int] | None = None,
    uploaded_by: Any = None,
    documents: QuerySet[Document] | None = None,
    ef_search: int | None = None,
    client: LLMClient | None = None,
    user: Any = None,
    snippets: bool = False,
) -> SearchResults:
    """The ``k`` best chunks for ``query``, best first, and the cost of embedding it.

    ``mode`` is ``"hybrid"``, ``"vector"`` or ``"keyword"`` (default: the ``SEARCH_MODE``
    setting, ``"hybrid"``). ``ef_search`` trades speed for recall in the vector ranking
    (pgvector's ``hnsw.ef_search``; default: the ``EF_SEARCH`` setting, raised to the number of
    chunks asked for). Filters (``document_ids``, ``uploaded_by``, ``documents``: a queryset of
    the documents to search, e.g. ``Document.objects.filter(mime_type="application/pdf")``)
    narrow the candidates; pgvector's iterative index scan keeps filtered vector searches
    returning enough hits. ``snippets``: mark the query's words in a passage of each hit (one
    more query).
    """
    mode = search_mode(mode)
    config = knowledge_settings()
    ids = None if document_ids is None else list(document_ids)
    depth = max(k, config.hybrid_candidates) if mode == "hybrid" else k
    # Rankings of (chunk id, score), best first; the chunks themselves are read for the winners only.
    vector_ranking: list[tuple[int, float]] = []
    keyword_ranking: list[tuple[int, float]] = []
    cost: Decimal | None = Decimal(0)
    if mode in ("vector", "hybrid"):
        model_info = embedding_model(model or config.embedding_model)
        client = client or default_client()
        embedded = client.generate_embedding(query, model=model_info.name, feature="knowledge.search", user=user)
        cost = embedded.cost
        vector_ranking = vector_search(
            embedded.embedding,
            model_info,
            k=depth,
            ef_search=ef_search or config.ef_search,
            document_ids=ids,
            uploaded_by=uploaded_by,
            documents=documents,
        )
    if mode in ("keyword", "hybrid"):
        ranked = keyword_chunks(
            query,
            k=depth,
            document_ids=ids,
            uploaded_by=uploaded_by,
            documents=documents,
            candidates=config.keyword_candidates,
        )
        keyword_ranking = [] if ranked is None else list(ranked.values_list("pk", "score"))
    if mode == "vector":
        scored = vector_ranking
    elif mode == "keyword":
        scored = keyword_ranking
    else:
        fused = reciprocal_rank_fusion([vector_ranking, keyword_ranking], k=config.rrf_k, key=itemgetter(0))
        scored = [(pk, score) for (pk, _), score in fused[:k]]
    chunks = Chunk.objects.select_related("document").only(*_FIELDS).in_bulk([pk for pk, _ in scored])
    hits = [_hit(chunks[pk], score) for pk, score in scored if pk in chunks]  # a chunk may just have been replaced
    if snippets:
        marked = snippets_of(hits, query)
        hits = [marked[hit.chunk_id] for hit in hits]
    return SearchResults(hits=hits, cost=cost, mode=mode)


def snippets_of(hits: Sequence[SearchHit], query: str) -> dict[int, SearchHit]:
    """Chunk id -> the hit with its ``snippet``: the passages of the chunk richest in ``query``'s
    words (their stems, as keyword search matches them), the words marked."""
    terms = parse_keyword_query(query, candidates=0).terms if hits else {}
    headlines: dict[int, str] = {}
    if terms:
        headline = SearchHeadline(headline_source("text"), LexemeQuery(terms), config=SEARCH_CONFIG, **HEADLINE_OPTIONS)
        found = Chunk.objects.filter(pk__in=[hit.chunk_id for hit in hits]).annotate(headline=headline)
        # A chunk without any of the words (found by meaning) is shown from its start instead.
        headlines = {pk: text for pk, text in found.values_list("pk", "headline") if START in text}
    return {
        hit.chunk_id: replace(
            hit,
            snippet=marked_html(headlines[hit.chunk_id]) if hit.chunk_id in headlines else plain_snippet(hit.text),
        )
        for hit in hits
    }


def _hit(chunk: Chunk, score: float) -> SearchHit:
    page_starts = chunk.document.page_starts
    return SearchHit(
        chunk_id=chunk.pk,
        document_id=chunk.document_id,
        document_title=chunk.document.title,
        index=chunk.index,
        text=chunk.text,
        score=float(score),
        start_char=chunk.start_char,
        end_char=chunk.end_char,
        page=page_at(page_starts, chunk.start_char),
        heading=chunk.heading,
        position=describe(
            start_char=chunk.start_char, end_char=chunk.end_char, page_starts=page_starts, heading=chunk.heading
        ),
    )


def reciprocal_rank_fusion[T](
    rankings: Sequence[Sequence[T]], *, k: int, key: Callable[[T], Hashable] = attrgetter("pk")
) -> list[tuple[T, float]]:
    """Items of several rankings (best first), by ``sum(1 / (k + rank))``; ties: earlier rankings first."""
    scores: dict[Hashable, float] = {}
    items: dict[Hashable, T] = {}
    first_seen: dict[Hashable, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking, 1):
            name = key(item)
            scores[name] = scores.get(name, 0.0) + 1 / (k + rank)
            items.setdefault(name, item)
            first_seen.setdefault(name, (which, rank))
    order = sorted(scores, key=lambda name: (-scores[name], first_seen[name]))
    return [(items[name], scores[name]) for name in order]


# -- vector ---------------------------------------------------------------------------------------


def _filtered(
    chunks: QuerySet[Chunk],
    document_ids: Sequence[int] | None,
    uploaded_by: Any,
    documents: QuerySet[Document] | None = None,
) -> QuerySet[Chunk]:
    if document_ids is not None:
        chunks = chunks.filter(document_id__in=list(document_ids))
    if uploaded_by is not None:
        chunks = chunks.filter(document__uploaded_by=uploaded_by)
    if documents is not None:
        chunks = chunks.filter(document__in=documents.values("pk"))
    return chunks


def nearest_chunks(
    vector: list[float],
    model: EmbeddingModel,
    *,
    k: int = 10,
    document_ids: Iterable[int] | None = None,
    uploaded_by: Any = None,
    documents: QuerySet[Document] | None = None,
) -> QuerySet[Any]:
    """The queryset of the ``k`` chunks nearest to ``vector`` (same model only)."""
    # The cast and the model filter match the partial HNSW index of this model exactly.
    distance = CosineDistance(Cast("embedding", VectorField(dimensions=model.dimensions)), vector)
    chunks = _filtered(
        Chunk.objects.filter(embedding_model=model.name),
        None if document_ids is None else list(document_ids),
        uploaded_by,
        documents,
    )
    return chunks.select_related("document").annotate(distance=distance).only(*_FIELDS).order_by("distance")[:k]


def vector_search(
    vector: list[float],
    model: EmbeddingModel,
    *,
    k: int,
    ef_search: int,
    document_ids: Sequence[int] | None = None,
    uploaded_by: Any = None,
    documents: QuerySet[Document] | None = None,
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity) of ``nearest_chunks``, best first, with ``ef_search`` (at least ``k``)."""
    ef = min(max(ef_search, k), MAX_EF_SEARCH)
    using = router.db_for_read(Chunk)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef)])
        # Always: besides filters, rows the index still holds but the query cannot see (deleted
        # documents not yet vacuumed, replaced versions) would otherwise leave fewer than k hits.
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        nearest = nearest_chunks(
            vector, model, k=k, document_ids=document_ids, uploaded_by=uploaded_by, documents=documents
        )
        rows = list(nearest.values_list("pk", "distance"))
    # relaxed_order: the index may return rows slightly out of order.
    return [(pk, 1 - distance) for pk, distance in sorted(rows, key=itemgetter(1))]


# -- keyword --------------------------------------------------------------------------------------

_PHRASE = re.compile(r'"([^"]*)"')
_EXCLUDED = re.compile(r"(?:^|(?<=\s))-(\w\S*)")


class LexemeQuery(SearchQuery):
    """A tsquery of lexemes as they are (already normalised: no parsing, no stemming), joined by ``|``."""

    template = "%(expressions)s::tsquery"

    def __init__(self, lexemes: Iterable[str]):
        super().__init__(" | ".join(_tsquery_literal(lexeme) for lexeme in lexemes), search_type="raw")


def _tsquery_literal(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class TermStatistics:
    """Document frequencies of lexemes, from PostgreSQL's statistics of ``Chunk.search_vector``.

    ``ANALYZE`` (run by autovacuum as the table changes) samples the column and keeps its most
    common lexemes with the fraction of chunks holding each (``pg_stats.most_common_elems``; the
    migration raises the column's statistics target so that up to 10,000 are kept). A lexeme
    not in that list is rarer than all of them: it is given half the smallest listed fraction.
    Before the first ``ANALYZE`` every term weighs the same.
    """

    chunks: float = 0.0
    frequencies: dict[str, float] = field(default_factory=dict)
    floor: float = 0.0

    def frequency(self, lexeme: str) -> float | None:
        """The fraction of chunks holding ``lexeme``; None without statistics."""
        if not self.frequencies or self.chunks <= 0:
            return None
        return self.frequencies.get(lexeme, self.floor)

    def weight(self, lexeme: str) -> float:
        """BM25's inverse document frequency, ``ln(1 + (N - n + 0.5) / (n + 0.5))``; 1 without statistics."""
        share = self.frequency(lexeme)
        if share is None:
            return 1.0
        n = share * self.chunks
        return math.log(1 + (self.chunks - n + 0.5) / (n + 0.5))


_statistics_lock = threading.Lock()
_statistics: dict[str, tuple[tuple[Any, ...], TermStatistics]] = {}

_PARSE_SQL = f"""
    SELECT ARRAY(SELECT lexeme FROM unnest(to_tsvector(%s::regconfig, %s)) ORDER BY lexeme),
           c.reltuples,
           greatest(pg_stat_get_last_analyze_time(c.oid), pg_stat_get_last_autoanalyze_time(c.oid))
    FROM pg_class c WHERE c.oid = '{Chunk._meta.db_table}'::regclass
"""
_STATISTICS_SQL = f"""
    SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'search_vector'
    WHERE c.oid = '{Chunk._meta.db_table}'::regclass
"""


def term_statistics(using: str, key: tuple[Any, ...]) -> TermStatistics:
    """The column's lexeme statistics, read again only when ``key`` (analyze time, row estimate) changes."""
    with _statistics_lock:
        cached = _statistics.get(using)
    if cached is not None and cached[0] == key:
        return cached[1]
    with connections[using].cursor() as cursor:
        cursor.execute(_STATISTICS_SQL)
        row = cursor.fetchone()
    stats = TermStatistics()
    chunks = float(key[1] or 0)
    if row is not None and row[0] and chunks > 0:
        lexemes, shares = row
        # The last two fractions are the smallest and largest of the listed ones.
        stats = TermStatistics(
            chunks=chunks, frequencies=dict(zip(lexemes, shares, strict=False)), floor=shares[-2] / 2
        )
    with _statistics_lock:
        _statistics[using] = (key, stats)
    return stats


@dataclass(frozen=True)
class KeywordQuery:
    #: The lexemes that score, with their weights (inverse document frequency).
    terms: dict[str, float]
    #: The lexemes whose chunks are ranked: the rarest ones (see ``parse_keyword_query``).
    candidates: tuple[str, ...]
    #: Quoted phrases and excluded words, in web search syntax ('' if none): every match obeys them.
    required: str


def parse_keyword_query(query: str, *, candidates: int | None = None, using: str | None = None) -> KeywordQuery:
    """``query``'s lexemes (English stemming, stop words dropped), weighed, and its required parts.

    The chunks ranked are those holding the query's rarest terms: terms are taken rarest first
    while their estimated chunk counts sum to at most ``candidates`` (default: the
    ``KEYWORD_CANDIDATES`` setting; at least one term is always taken). The commoner terms only
    add to the score of those chunks, as in Elasticsearch's ``cutoff_frequency``: a chunk holding
    nothing but common words rarely outranks one holding a rare word, and ranking every chunk
    with a common word would cost time in proportion to the table.
    """
    using = using or router.db_for_read(Chunk)
    budget = knowledge_settings().keyword_candidates if candidates is None else candidates
    phrases = _PHRASE.findall(query)
    loose = _PHRASE.sub(" ", query)
    excluded = _EXCLUDED.findall(loose)
    loose = _EXCLUDED.sub(" ", loose)
    required = " ".join([*(f'"{p}"' for p in phrases if p.strip()), *(f"-{w}" for w in excluded)])
    with connections[using].cursor() as cursor:
        cursor.execute(_PARSE_SQL, [SEARCH_CONFIG, " ".join([loose, *phrases])])
        lexemes, chunks, analyzed = cursor.fetchone()
    stats = term_statistics(using, (analyzed, chunks))
    terms = {lexeme: stats.weight(lexeme) for lexeme in lexemes}
    chosen: list[str] = []
    if any(stats.frequency(lexeme) is None for lexeme in lexemes):  # no statistics yet
        chosen = list(lexemes)
    else:
        expected = 0.0
        for lexeme in sorted(lexemes, key=lambda x: (stats.frequency(x), x)):
            more = (stats.frequency(lexeme) or 0.0) * stats.chunks
            if chosen and expected + more > budget:
                break
            chosen.append(lexeme)
            expected += more
    return KeywordQuery(terms=terms, candidates=tuple(chosen), required=required)


def keyword_chunks(
    query: str | KeywordQuery,
    *,
    k: int = 10,
    document_ids: Iterable[int] | None = None,
    uploaded_by: Any = None,
    documents: QuerySet[Document] | None = None,
    candidates: int | None = None,
) -> QuerySet[Any] | None:
    """The queryset of the ``k`` chunks ranked best for ``query``'s words (annotated ``score``),
    or None if it has no words to look for. ``candidates``: see ``parse_keyword_query``."""
    parsed = query if isinstance(query, KeywordQuery) else parse_keyword_query(query, candidates=candidates)
    if not parsed.terms:  # nothing but stop words, or only exclusions
        return None
    chunks = Chunk.objects.all()
    if parsed.candidates:
        chunks = chunks.filter(search_vector=LexemeQuery(parsed.candidates))
    if parsed.required:
        chunks = chunks.filter(
            search_vector=SearchQuery(parsed.required, search_type="websearch", config=SEARCH_CONFIG)
        )
    score = reduce(
        add,
        (
            SearchRank(F("search_vector"), LexemeQuery([lexeme])) * Value(weight)
            for lexeme, weight in parsed.terms.items()
        ),
        Value(0.0),
    )
    chunks = _filtered(chunks, None if document_ids is None else list(document_ids), uploaded_by, documents)
    return chunks.select_related("document").annotate(score=score).only(*_FIELDS).order_by("-score", "id")[:k]
