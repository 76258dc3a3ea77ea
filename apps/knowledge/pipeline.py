"""Document -> text -> token chunks -> embeddings -> pgvector, safely re-runnable.

A worker first *claims* its documents (one conditional UPDATE: pending, or processing for
longer than the timeout); the claim time is each document's lease. Embeddings are computed
outside any transaction; a document's chunks are then replaced in one transaction, and only if
its lease is still ours. A worker killed half-way therefore leaves the previous chunks intact and
the document re-claimable: never half-written, never duplicated.

Documents are processed in groups (``process_documents``): the claimed documents are extracted
and chunked one by one, their chunks embedded together in calls of ``EMBED_BATCH`` chunks that
span documents (many small documents fill one batch of the local model or one provider request
instead of one call each), and the group is written in one transaction: one DELETE, one
multi-row INSERT of chunks and one UPDATE of the documents, each document only if its lease
holds. A worker that takes a message also takes other pending documents up to a group
(``process_document``), so a queue of small files is embedded in full batches too.

A document that fails for any reason is marked failed with the reason: the reader's
``ExtractionError``, a non-retryable provider error, or anything unexpected (with its type).
Retryable provider errors put it back to pending for the retry. Each claim counts one attempt
(except those that ended in a retryable provider error: the actor's retries bound those); a
document claimed ``MAX_ATTEMPTS`` times without finishing (its worker killed, out of memory, or
stuck past the timeout) is failed with "gave up after N attempts" instead of claimed again, so
the stale sweep cannot re-send it forever.

Extraction of the formats that expand (.docx, PDF, HTML) runs in a child process with memory and
CPU limits (``apps.knowledge.extraction.sandbox``). Chunks whose text is stored already (same
model) take the stored vector instead of an embedding call, and storing a new version of a file
deletes its older versions in the same transaction (``apps.knowledge.versions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.knowledge.chunking import TextChunk, chunk_text
from apps.knowledge.conf import knowledge_settings
from apps.knowledge.embedding_models import EmbeddingModel, embedding_model
from apps.knowledge.extraction import ExtractionError
from apps.knowledge.extraction.sandbox import ExtractionLimits, extract_text_limited
from apps.knowledge.models import Chunk, Document
from apps.knowledge.positions import with_headings
from apps.knowledge.versions import known_vectors, resolve, text_hash
from apps.llm.accounting.context import llm_context
from apps.llm.client import LLMClient, default_client
from apps.llm.errors import LLMError
from apps.llm.pricing.sheets import PRICE_DECIMAL_PLACES

logger = logging.getLogger(__name__)

#: A group stops growing past this many bytes of files (at least one document): a group is
#: embedded within one lease, so it must stay far from ``PROCESSING_TIMEOUT``.
GROUP_BYTES = 2 * 1024 * 1024
_MONEY_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMAL_PLACES)


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


def _claimable(now: datetime) -> Q:
    stale = now - timedelta(seconds=knowledge_settings().processing_timeout)
    return Q(status=Document.Status.PENDING) | Q(status=Document.Status.PROCESSING, processing_started_at__lt=stale)


def claim_many(document_ids: Iterable[int]) -> list[Document]:
    """Take the documents for processing; those not ours to take are left out.

    A document already claimed ``MAX_ATTEMPTS`` times is failed instead ("gave up after N
    attempts", with the last attempt's reason if it left one).
    """
    ids = list(document_ids)
    now = timezone.now()
    limit = knowledge_settings().max_attempts
    claimable = Document.objects.filter(pk__in=ids).filter(_claimable(now))
    for document in claimable.filter(attempts__gte=limit).only("pk", "attempts", "error_message", "status"):
        last = document.error_message.removeprefix("Will retry: ")
        was = " (it was still processing at the timeout)" if document.status == Document.Status.PROCESSING else ""
        reason = f"Gave up after {document.attempts} attempts{was}" + (f"; the last: {last}" if last else "")
        Document.objects.filter(pk=document.pk).filter(_claimable(now)).update(
            status=Document.Status.FAILED, error_message=reason[:5000], processed_at=now
        )
    taken = claimable.filter(attempts__lt=limit).update(
        status=Document.Status.PROCESSING,
        processing_started_at=now,
        attempts=F("attempts") + 1,
        chunks_done=0,
        error_message="",
    )
    if not taken:
        return []
    # The claim time is unique to this claim: it selects exactly what this UPDATE took.
    mine = Document.objects.filter(pk__in=ids, status=Document.Status.PROCESSING, processing_started_at=now)
    order = {pk: i for i, pk in enumerate(ids)}
    return sorted(mine, key=lambda d: order[d.pk])


def claim(document_id: int) -> Document | None:
    """Take the document for processing, or None if it is not ours to take."""
    claimed = claim_many([document_id])
    return claimed[0] if claimed else None


def _held(document: Document) -> QuerySet[Document]:
    """The document, only while this worker's lease on it holds."""
    return Document.objects.filter(
        pk=document.pk, status=Document.Status.PROCESSING, processing_started_at=document.processing_started_at
    )


def _held_all(documents: list[Document]) -> QuerySet[Document]:
    """The documents among ``documents`` whose lease is still held (by the group's claim times)."""
    return Document.objects.filter(
        pk__in=[d.pk for d in documents],
        status=Document.Status.PROCESSING,
        processing_started_at__in={d.processing_started_at for d in documents},
    )


def fail(document: Document, reason: str) -> None:
    _held(document).update(status=Document.Status.FAILED, error_message=reason[:5000], processed_at=timezone.now())


@dataclass(eq=False)
class _Work:
    """A claimed document on its way through one group."""

    document: Document
    pieces: list[TextChunk] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    vectors: list[Any] = field(default_factory=list)  # a vector (list or array) per piece, None until known
    cost: Decimal | None = Decimal(0)
    failed: bool = False

    @property
    def embedded(self) -> bool:
        return all(v is not None for v in self.vectors)


def process_document(document_id: int, *, client: LLMClient | None = None, group: bool = False) -> Document | None:
    """Extract, chunk, embed and store one document; None if it was not ours to take (or is gone).

    ``group=True`` (the workers): take other pending documents along, up to a group, and embed
    them together. Raises retryable ``LLMError``s, and ``LeaseLost`` if another worker took
    this document meanwhile.
    """
    document = claim(document_id)
    if document is None:
        logger.info("Document %s is not pending (or is being processed): skipped", document_id)
        return None
    claimed = [document]
    if group:
        claimed += claim_many(_pending_group(exclude=document))
    done = _process(claimed, client or default_client())
    if document.pk in done:
        return done[document.pk]
    if Document.objects.filter(pk=document.pk).exists():
        raise LeaseLost(f"Document {document.pk} was claimed by another worker")
    return None  # deleted meanwhile, or replaced by a later version of its file in the same group


def process_documents(document_ids: Sequence[int], *, client: LLMClient | None = None) -> list[Document]:
    """Process the documents in groups (of ``GROUP_DOCUMENTS``, at most ``GROUP_BYTES`` of files
    each), embedding each group's chunks together; the documents that were ours to take, in
    their final state (those another worker took meanwhile are left out).

    Raises retryable ``LLMError``s (the group's documents are pending again; the earlier groups
    are stored).
    """
    client = client or default_client()
    sizes = dict(Document.objects.filter(pk__in=document_ids).values_list("pk", "size"))
    results: list[Document] = []
    for ids in _groups([pk for pk in document_ids if pk in sizes], sizes):
        done = _process(claim_many(ids), client)
        results += [done[pk] for pk in ids if pk in done]
    return results


def _groups(ids: list[int], sizes: dict[int, int]) -> Iterable[list[int]]:
    limit = knowledge_settings().group_documents
    group: list[int] = []
    size = 0
    for pk in ids:
        if group and (len(group) >= limit or size + sizes[pk] > GROUP_BYTES):
            yield group
            group, size = [], 0
        group.append(pk)
        size += sizes[pk]
    if group:
        yield group


def _pending_group(exclude: Document) -> list[int]:
    """Pending documents (oldest first) that fit in a group beside ``exclude``."""
    limit = knowledge_settings().group_documents - 1
    candidates = (
        Document.objects.filter(status=Document.Status.PENDING)
        .exclude(pk=exclude.pk)
        .order_by("created_at")
        .values_list("pk", "size")[:limit]
    )
    picked: list[int] = []
    size = exclude.size
    for pk, file_size in candidates:
        if size + file_size > GROUP_BYTES:
            break
        picked.append(pk)
        size += file_size
    return picked


def _process(claimed: list[Document], client: LLMClient) -> dict[int, Document]:
    """The claimed documents through the pipeline; their final state, by id (those whose lease
    was lost are left out)."""
    if not claimed:
        return {}
    config = knowledge_settings()
    model = embedding_model(config.embedding_model)
    work = [_prepare(document, model) for document in claimed]
    _record_extraction(work)
    try:
        _embed(work, model, client)
    except LLMError as error:  # retryable: _embed fails the documents on the others
        for item in work:
            if not item.failed:
                # Back to pending so the retry (or the stale-document sweep) can claim it; this
                # attempt does not count (the actor's retries bound these).
                _held(item.document).update(
                    status=Document.Status.PENDING,
                    error_message=f"Will retry: {error}"[:5000],
                    attempts=F("attempts") - 1,
                )
        raise
    try:
        stored, replaced = _store([w for w in work if not w.failed], model)
    except Exception as error:  # rolled back: the previous chunks are intact
        logger.exception("Storing documents %s failed", [w.document.pk for w in work if not w.failed])
        for item in work:
            if not item.failed:
                _fail(item, f"Unexpected error while storing the chunks: {type(error).__name__}: {error}")
        stored, replaced = set(), set()
    lost = {w.document.pk for w in work if not w.failed} - stored - replaced
    if lost:
        logger.warning("Documents %s were claimed by another worker meanwhile: not stored", sorted(lost))
    final = Document.objects.in_bulk([w.document.pk for w in work if w.document.pk not in lost | replaced])
    return final


def _prepare(document: Document, model: EmbeddingModel) -> _Work:
    """Extract and chunk; a failure fails the document (with the reason) and nothing else."""
    config = knowledge_settings()
    item = _Work(document)
    try:
        with document.file.open("rb") as fh:
            data = fh.read()
        extracted, usage = extract_text_limited(
            document.file.name,
            data,
            max_bytes=config.max_upload_bytes,
            limits=ExtractionLimits(memory_bytes=config.extraction_memory_bytes, seconds=config.extraction_timeout),
        )
        size = min(config.chunk_tokens, model.max_input_tokens)
        pieces = chunk_text(
            extracted.text,
            count_tokens=token_counter(model),
            max_tokens=size,
            overlap=min(config.chunk_overlap, size // 4),
            hard_limit=model.max_input_tokens,
        )
        if usage.isolated:
            logger.debug(
                "Document %s extracted in a child in %.2f s, peak RSS %s bytes",
                document.pk,
                usage.wall_seconds,
                usage.peak_rss_bytes,
            )
        item.pieces = with_headings(pieces, extracted.text, extracted.mime_type)
        item.hashes = [text_hash(p.text) for p in item.pieces]
        item.vectors = [None] * len(item.pieces)
        # Written for the whole group at once (_record_extraction).
        document.chunk_count = len(item.pieces)
        document.mime_type = extracted.mime_type
        document.warnings = extracted.warnings
        document.page_starts = extracted.page_starts
    except ExtractionError as error:
        _fail(item, str(error))
    except Exception as error:  # anything else still ends the document, with the reason
        logger.exception("Document %s: extraction failed unexpectedly", document.pk)
        _fail(item, f"Unexpected error while reading the file: {type(error).__name__}: {error}")
    return item


def _record_extraction(work: list[_Work]) -> None:
    """What extraction found (chunk count, type, warnings, page offsets), shown while the group is
    embedded: one statement for the group (a commit per document cost more than its chunking),
    each document only under this worker's lease (a group's claim times are its own)."""
    prepared = [item.document for item in work if not item.failed]
    if not prepared:
        return
    _held_all(prepared).bulk_update(prepared, ["chunk_count", "mime_type", "warnings", "page_starts"])


def _fail(item: _Work, reason: str) -> None:
    item.failed = True
    fail(item.document, reason)


def _embed(work: list[_Work], model: EmbeddingModel, client: LLMClient) -> None:
    """Embed every chunk of the group in calls of ``EMBED_BATCH`` chunks that span documents,
    sorted by length across the group.

    A chunk whose text is stored already with this model takes that vector. A call is for one
    uploader's documents (the request log attributes it to them). A non-retryable error fails
    the documents with chunks in that call; retryable ones propagate.
    """
    batch_size = knowledge_settings().embed_batch
    known = known_vectors(model.name, (h for item in work if not item.failed for h in item.hashes))
    by_user: dict[int | None, list[tuple[_Work, int]]] = {}
    for item in work:
        if item.failed:
            continue
        item.vectors = [known.get(h) for h in item.hashes]
        missing = [(item, i) for i, vector in enumerate(item.vectors) if vector is None]
        by_user.setdefault(item.document.uploaded_by_id, []).extend(missing)
    for user, slots in by_user.items():
        # Longest first across the whole group, so each call holds chunks of about one length: the
        # local model pads every run to its longest text, and a group sorted as one lets its runs
        # pad as little as the raw embedder's over a whole corpus (a provider ignores the order).
        slots.sort(key=lambda slot: slot[0].pieces[slot[1]].token_count, reverse=True)
        for start in range(0, len(slots), batch_size):
            batch = [(item, i) for item, i in slots[start : start + batch_size] if not item.failed]
            if not batch:
                continue
            documents = {item.document for item, _ in batch}
            try:
                # About its document (usage_for): a batch spanning several documents has no one subject.
                with llm_context(subject=next(iter(documents)) if len(documents) == 1 else None):
                    response = client.generate_embedding(
                        [item.pieces[i].text for item, i in batch],
                        model=model.name,
                        feature="knowledge.embed",
                        user=user,
                    )
            except LLMError as error:
                if error.retryable:
                    raise
                for item in {item for item, _ in batch}:
                    _fail(item, f"{type(error).__name__}: {error}")
                continue
            except Exception as error:  # a bug or a broken local model: the reason, not a stuck document
                logger.exception("Embedding failed unexpectedly")
                for item in {item for item, _ in batch}:
                    _fail(item, f"Unexpected error while embedding: {type(error).__name__}: {error}")
                continue
            for (item, i), vector in zip(batch, response.embeddings, strict=True):
                item.vectors[i] = vector
            shares = _split_cost(response.cost, [item.pieces[i].token_count for item, i in batch])
            for (item, _), share in zip(batch, shares, strict=True):
                item.cost = None if item.cost is None or share is None else item.cost + share
            _report_progress({item for item, _ in batch})


def _split_cost(cost: Decimal | None, weights: list[int]) -> list[Decimal | None]:
    """``cost`` shared by weight, exactly: the shares add up to it (the last takes the rounding)."""
    if cost is None:
        return [None] * len(weights)
    total = sum(weights) or len(weights)
    shares = [(cost * (w or 1) / total).quantize(_MONEY_QUANTUM) for w in weights[:-1]]
    return [*shares, cost - sum(shares, Decimal(0))]


def _report_progress(items: set[_Work]) -> None:
    """``chunks_done`` of the documents a call embedded for, in one statement."""
    Document.objects.bulk_update(
        [Document(pk=item.document.pk, chunks_done=sum(v is not None for v in item.vectors)) for item in items],
        ["chunks_done"],
    )


def _store(work: list[_Work], model: EmbeddingModel) -> tuple[set[int], set[int]]:
    """Replace the chunks of the group's documents in one transaction, each only if its lease
    holds; the ids stored, and those deleted as older versions of what was stored."""
    if not work:
        return set(), set()
    now = timezone.now()
    names = {w.document.source_name for w in work if w.document.source_name}
    with transaction.atomic():
        # The group's documents and every version of their names, locked in one statement in one
        # order for every worker: no deadlocks.
        locked = list(
            Document.objects.select_for_update()
            .filter(Q(pk__in=[w.document.pk for w in work]) | Q(source_name__in=names))
            .order_by("pk")
            .only("pk", "status", "processing_started_at", "source_name", "version")
        )
        current = {d.pk: d for d in locked}
        held = [
            w
            for w in work
            if w.document.pk in current
            and current[w.document.pk].status == Document.Status.PROCESSING
            and current[w.document.pk].processing_started_at == w.document.processing_started_at
        ]
        versions = resolve([current[w.document.pk] for w in held], locked)
        for w in held:
            if w.document.pk in versions.superseded:
                _fail(w, versions.superseded[w.document.pk])
        held = [w for w in held if w.document.pk not in versions.superseded and w.document.pk not in versions.replaced]
        # Older versions go with their chunks and (on commit) their files, as the new one arrives.
        Document.objects.filter(pk__in=versions.replaced).delete()
        if not held:
            return set(), set(versions.replaced)
        Chunk.objects.filter(document_id__in=[w.document.pk for w in held]).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document_id=w.document.pk,
                    index=p.index,
                    text=p.text,
                    token_count=p.token_count,
                    start_char=p.start_char,
                    end_char=p.end_char,
                    heading=p.heading,
                    embedding_model=model.name,
                    embedding=vector,
                    text_hash=digest,
                )
                for w in held
                for p, digest, vector in zip(w.pieces, w.hashes, w.vectors, strict=True)
            ],
            batch_size=1000,
        )
        updates = []
        for w in held:
            document = current[w.document.pk]
            document.status = Document.Status.READY
            document.chunk_count = document.chunks_done = len(w.pieces)
            document.token_count = sum(p.token_count for p in w.pieces)
            document.embedding_model = model.name
            document.embedding_cost = w.cost
            document.processed_at = now
            document.error_message = ""
            updates.append(document)
        Document.objects.bulk_update(
            updates,
            [
                "status",
                "chunk_count",
                "chunks_done",
                "token_count",
                "embedding_model",
                "embedding_cost",
                "processed_at",
                "error_message",
            ],
        )
    return {w.document.pk for w in held}, set(versions.replaced)


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
        status=Document.Status.PENDING, error_message="", chunks_done=0, attempts=0
    )
