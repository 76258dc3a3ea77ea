"""One upload of many files: a result for each file, and each document's status afterwards.

The upload page's script reads both as JSON. A file that cannot be taken (empty, too large, of an
unsupported type, a duplicate, or one the server failed to store) is refused with the reason, by
itself: the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from django.db import transaction
from django.urls import reverse

from apps.knowledge.documents import DuplicateDocument, add_document
from apps.knowledge.extraction import ExtractionError
from apps.knowledge.models import Document

logger = logging.getLogger(__name__)

#: Most documents one status request may ask about (the page asks for one upload's files).
MAX_STATUS_IDS = 500


class FileResult(TypedDict, total=False):
    name: str
    #: Queued (True) or refused (False).
    ok: bool
    #: "queued", or why the file was refused (without its name: the line shows it).
    message: str
    #: Refused: ``ExtractionError``'s code ("empty", "too_large", "unsupported_type", ...),
    #: "duplicate", or "error" (the server failed; logged).
    code: str
    #: The document made (queued) or already holding the same content (duplicate).
    id: int
    status: str
    url: str


class DocumentStatus(TypedDict):
    id: int
    title: str
    status: str
    #: Why it failed ("" unless failed; "Will retry: ..." while a retry is pending).
    error: str
    chunks_done: int
    chunk_count: int
    url: str


def add_files(files: Iterable[Any], *, rejected: Sequence[ExtractionError] = (), user: Any = None) -> list[FileResult]:
    """Add each uploaded file as a document; one result per file, in order (``rejected``, the
    files cut off while uploading, first). Never raises for one bad file."""
    results: list[FileResult] = [refused(error.filename or "file", error.code, str(error)) for error in rejected]
    for upload in files:
        results.append(add_file(upload, user=user))
    return results


def add_file(upload: Any, *, user: Any = None) -> FileResult:
    name = upload.name
    if not upload.size:
        # Caught here, not after storing it: an empty file can only ever fail.
        return refused(name, "empty", "the file is empty (0 bytes)")
    try:
        with transaction.atomic():  # a failed file leaves nothing behind, and the batch's transaction usable
            # The upload itself, not its bytes: a large one stays in its temporary file.
            document = add_document(name=name, data=upload, user=user)
    except ExtractionError as problem:
        return refused(name, problem.code, str(problem))
    except DuplicateDocument as duplicate:
        existing = duplicate.existing
        return {
            **refused(name, "duplicate", str(duplicate)),
            "id": existing.pk,
            "status": existing.status,
            "url": _url(existing.pk),
        }
    except Exception:
        logger.exception("Upload of %r failed", name)
        return refused(name, "error", "the server could not store the file (the error is logged); try again")
    return {
        "name": name,
        "ok": True,
        "message": "queued",
        "id": document.pk,
        "status": document.status,
        "url": _url(document.pk),
    }


def refused(name: str, code: str, message: str) -> FileResult:
    # The messages name the file for the shell; each result line names it already.
    return {"name": name, "ok": False, "code": code, "message": message.removeprefix(f"{name}: ")}


def parse_ids(raw: str) -> list[int]:
    """``"3,5,8"`` -> [3, 5, 8]; ValueError naming the problem."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise ValueError("ids: give the document ids, comma-separated (e.g. ids=3,5,8)")
    if len(parts) > MAX_STATUS_IDS:
        raise ValueError(f"ids: at most {MAX_STATUS_IDS} documents per request, got {len(parts)}")
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"ids: not a comma-separated list of document ids: {raw[:100]!r}")
    return [int(part) for part in parts]


def statuses(ids: Sequence[int]) -> tuple[list[DocumentStatus], list[int]]:
    """The status of each document in ``ids`` that exists, and the ids that do not (deleted)."""
    documents = Document.objects.filter(pk__in=ids).only(
        "pk", "title", "status", "error_message", "chunks_done", "chunk_count"
    )
    found: dict[int, DocumentStatus] = {
        document.pk: {
            "id": document.pk,
            "title": document.title,
            "status": document.status,
            "error": document.error_message,
            "chunks_done": document.chunks_done,
            "chunk_count": document.chunk_count,
            "url": _url(document.pk),
        }
        for document in documents
    }
    return [found[pk] for pk in ids if pk in found], [pk for pk in ids if pk not in found]


def _url(document_id: int) -> str:
    return reverse("admin:knowledge_document_change", args=[document_id])
