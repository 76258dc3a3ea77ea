"""Document -> text -> token chunks -> embeddings -> pgvector, safely re-runnable.

A worker first *claims* the document (one conditional UPDATE: pending, or processing for
longer than the timeout); its claim time is its lease. Embeddings are computed outside any
transaction; the chunks are then replaced in one transaction, and only if the lease is
still ours. A worker killed half-way therefore leaves the previous chunks intact and the
document re-claimable: never half-written, never duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from itertools import batched

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.knowledge.chunking import chunk_text
from apps.knowledge.conf import knowledge_settings
from apps.knowledge.embedding_models import EmbeddingModel, embedding_model
from apps.knowledge.extraction import ExtractionError, extract_text
from apps.knowledge.models import Chunk, Document
from apps.knowledge.positions import with_headings
from apps.llm.client import LLMClient, default_client
from apps.llm.errors import LLMError

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker claimed the document after this one (this one took too long)."""


def token_counter(model: EmbeddingModel) -> Callable[[str], int]:
    """Counts tokens as the embedding model does, so chunks fit its input limit."""
    if model.is_local:
        from apps.llm.transport.local_embeddings import get_local_embedder

        return get_local_embedder(model.name).count_tokens
    from apps.llm.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    return lambda text: tokenizer.count_tokens(text, model.name)


def claim(document_id: int) -> Document | None:
    """Take the document for processing, or None if it is not ours to take."""
    now = timezone.now()
    stale = now - timedelta(seconds=knowledge_settings().processing_timeout)
    taken = (
        Document.objects.filter(pk=document_id)
        .filter(
            Q(status=Document.Status.PENDING) | Q(status=Document.Status.PROCESSING, processing_started_at__lt=stale)
        )
        .update(
            status=Document.Status.PROCESSING,
            processing_started_at=now,
            attempts=F("attempts") + 1,
            chunks_done=0,
            error_message="",
        )
    )
    return Document.objects.get(pk=document_id) if taken else None


def fail(document: Document, reason: str) -> None:
    Document.objects.filter(pk=document.pk, processing_started_at=document.processing_started_at).update(
        status=Document.Status.FAILED, error_message=reason[:5000], processed_at=timezone.now()
    )


def process_document(document_id: int, *, client: LLMClient | None = None) -> Document | None:
    """Extract, chunk, embed and store one document. Raises retryable ``LLMError``s."""
    document = claim(document_id)
    if document is None:
        logger.info("Document %s is not pending (or is being processed): skipped", document_id)
        return None
    config = knowledge_settings()
    try:
        model = embedding_model(config.embedding_model)
        with document.file.open("rb") as fh:
            data = fh.read()
        extracted = extract_text(document.file.name, data, max_bytes=config.max_upload_bytes)
        size = min(config.chunk_tokens, model.max_input_tokens)
        pieces = chunk_text(
            extracted.text,
            count_tokens=token_counter(model),
            max_tokens=size,
            overlap=min(config.chunk_overlap, size // 4),
            hard_limit=model.max_input_tokens,
        )
        pieces = with_headings(pieces, extracted.text, extracted.mime_type)
        Document.objects.filter(pk=document.pk).update(
            chunk_count=len(pieces),
            mime_type=extracted.mime_type,
            warnings=extracted.warnings,
            page_starts=extracted.page_starts,
        )
        vectors, cost = _embed(document, model, [p.text for p in pieces], client or default_client())
    except ExtractionError as error:
        fail(document, str(error))
        document.refresh_from_db()
        return document
    except LLMError as error:
        if error.retryable:
            # Back to pending so the retry (or the stale-document sweep) can claim it.
            Document.objects.filter(pk=document.pk, processing_started_at=document.processing_started_at).update(
                status=Document.Status.PENDING, error_message=f"Will retry: {error}"[:5000]
            )
            raise
        fail(document, f"{type(error).__name__}: {error}")
        document.refresh_from_db()
        return document
    _store(document, model, pieces, vectors, cost)
    document.refresh_from_db()
    return document


def _embed(
    document: Document, model: EmbeddingModel, texts: list[str], client: LLMClient
) -> tuple[list[list[float]], Decimal | None]:
    vectors: list[list[float]] = []
    cost: Decimal | None = Decimal(0)
    # Chunks per call: the unit of progress (the client splits further to the provider's limits).
    for group in batched(texts, knowledge_settings().embed_batch):
        response = client.generate_embedding(
            list(group), model=model.name, feature="knowledge.embed", user=document.uploaded_by_id
        )
        vectors.extend(response.embeddings)
        cost = None if cost is None or response.cost is None else cost + response.cost
        Document.objects.filter(pk=document.pk).update(chunks_done=len(vectors))
    return vectors, cost


def _store(document: Document, model: EmbeddingModel, pieces, vectors, cost) -> None:
    with transaction.atomic():
        current = Document.objects.select_for_update().get(pk=document.pk)
        if (
            current.status != Document.Status.PROCESSING
            or current.processing_started_at != document.processing_started_at
        ):
            raise LeaseLost(f"Document {document.pk} was claimed by another worker")
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document=document,
                    index=p.index,
                    text=p.text,
                    token_count=p.token_count,
                    start_char=p.start_char,
                    end_char=p.end_char,
                    heading=p.heading,
                    embedding_model=model.name,
                    embedding=vector,
                )
                for p, vector in zip(pieces, vectors, strict=True)
            ],
            batch_size=500,
        )
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.READY,
            chunk_count=len(pieces),
            chunks_done=len(pieces),
            token_count=sum(p.token_count for p in pieces),
            embedding_model=model.name,
            embedding_cost=cost,
            processed_at=timezone.now(),
            error_message="",
        )


def stale_documents() -> list[int]:
    """Documents a worker took and never finished (killed, or lost its message)."""
    now = timezone.now()
    timeout = timedelta(seconds=knowledge_settings().processing_timeout)
    return list(
        Document.objects.filter(
            Q(status=Document.Status.PROCESSING, processing_started_at__lt=now - timeout)
            | Q(status=Document.Status.PENDING, updated_at__lt=now - timeout)
        ).values_list("pk", flat=True)
    )


def reprocess(documents) -> int:
    """Mark documents for processing again (e.g. after changing the embedding model)."""
    return documents.exclude(status=Document.Status.PROCESSING).update(
        status=Document.Status.PENDING, error_message="", chunks_done=0
    )
