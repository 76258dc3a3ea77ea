"""Semantic search over the chunks, through the embedding model's HNSW index."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.embedding_models import EmbeddingModel, embedding_model
from apps.knowledge.models import Chunk
from apps.llm.client import LLMClient, default_client


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    document_title: str
    index: int
    text: str
    #: Cosine similarity, 1 = same direction.
    score: float
    start_char: int
    end_char: int


def nearest_chunks(
    vector: list[float],
    model: EmbeddingModel,
    *,
    k: int = 10,
    document_ids: Iterable[int] | None = None,
    uploaded_by: Any = None,
):
    """The queryset of the ``k`` chunks nearest to ``vector`` (same model only)."""
    # The cast and the model filter match the partial HNSW index of this model exactly.
    distance = CosineDistance(Cast("embedding", VectorField(dimensions=model.dimensions)), vector)
    chunks = Chunk.objects.filter(embedding_model=model.name)
    if document_ids is not None:
        chunks = chunks.filter(document_id__in=list(document_ids))
    if uploaded_by is not None:
        chunks = chunks.filter(document__uploaded_by=uploaded_by)
    return (
        chunks.select_related("document")
        .annotate(distance=distance)
        .only("id", "document_id", "document__title", "index", "text", "start_char", "end_char")
        .order_by("distance")[:k]
    )


@dataclass(frozen=True)
class SearchResults:
    hits: list[SearchHit]
    #: What embedding the query cost (USD; 0 for the local model, None if unknown).
    cost: Decimal | None


def search(query: str, k: int = 10, **options: Any) -> list[SearchHit]:
    """The ``k`` chunks most similar to ``query``, best first (see ``retrieve``)."""
    return retrieve(query, k, **options).hits


def retrieve(
    query: str,
    k: int = 10,
    *,
    model: str | None = None,
    document_ids: Iterable[int] | None = None,
    uploaded_by: Any = None,
    ef_search: int | None = None,
    client: LLMClient | None = None,
    user: Any = None,
) -> SearchResults:
    """The ``k`` chunks most similar to ``query``, best first, and the cost of embedding it.

    ``ef_search`` trades speed for recall (pgvector's ``hnsw.ef_search``; default: the
    ``KNOWLEDGE_EF_SEARCH`` setting). Filters narrow the candidates; pgvector's iterative
    index scan keeps filtered searches returning ``k`` hits.
    """
    model_info = embedding_model(model or knowledge_settings().embedding_model)
    client = client or default_client()
    embedded = client.generate_embedding(query, model=model_info.name, feature="knowledge.search", user=user)
    vector = embedded.embedding
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search or knowledge_settings().ef_search)]
        )
        if document_ids is not None or uploaded_by is not None:
            cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        rows = list(nearest_chunks(vector, model_info, k=k, document_ids=document_ids, uploaded_by=uploaded_by))
    hits = [
        SearchHit(
            chunk_id=c.pk,
            document_id=c.document_id,
            document_title=c.document.title,
            index=c.index,
            text=c.text,
            score=1 - c.distance,
            start_char=c.start_char,
            end_char=c.end_char,
        )
        for c in sorted(rows, key=lambda c: c.distance)
    ]
    return SearchResults(hits=hits, cost=embedded.cost)
