"""Adding documents: the one way in for the admin, the upload page and ``ingest_documents``."""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Any

from django.core.files.base import ContentFile, File
from django.db import IntegrityError, transaction

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.extraction import SUPPORTED_TYPES, ExtractionError, content_hash
from apps.knowledge.models import Document
from apps.knowledge.versions import next_version


class DuplicateDocument(Exception):
    def __init__(self, name: str, existing: Document):
        super().__init__(
            f"{name}: the same content is already in the knowledge base as “{existing.title}” "
            f"(document {existing.pk}); it is not embedded twice."
        )
        self.existing = existing


#: The unit of ``KNOWLEDGE_MAX_UPLOAD_MB`` (MAX_UPLOAD_BYTES = MB * 1024 * 1024): messages use it too,
#: so a 25 MB limit reads "25 MB".
MB = 1024 * 1024


def megabytes(size: int) -> str:
    return f"{size / MB:.1f}".rstrip("0").rstrip(".") + " MB"


def too_large(name: str, size: int | None = None) -> ExtractionError:
    """The refusal of a file over the upload limit (``size`` unknown when the upload was cut off)."""
    limit = megabytes(knowledge_settings().max_upload_bytes)
    what = f"{megabytes(size)} is" if size is not None else "the file is"
    return ExtractionError("too_large", f"{name}: {what} over the {limit} upload limit", filename=name)


def check_upload(name: str, size: int) -> None:
    """Refuse what can never be processed before storing it (type and size)."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        raise ExtractionError(
            "unsupported_type",
            f"{name}: unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_TYPES)}",
        )
    if size > knowledge_settings().max_upload_bytes:
        raise too_large(name, size)


def add_document(*, name: str, data: bytes | File, title: str = "", user: Any = None, enqueue: bool = True) -> Document:
    """Store the file and queue it for processing (once the transaction commits).

    ``data`` is the content, or an open file (an upload): that one is hashed in chunks and stored
    without being read into memory whole. ``enqueue=False``: the caller processes it (the stale
    sweep still picks it up should the caller not).
    """
    # Imported here: the actor module declares its queue on the broker when imported.
    from apps.knowledge.tasks import enqueue_document

    size = len(data) if isinstance(data, bytes) else data.size
    check_upload(name, size)
    digest = content_hash(data) if isinstance(data, bytes) else _file_hash(data)
    existing = Document.objects.filter(content_hash=digest).first()
    if existing is not None:
        raise DuplicateDocument(name, existing)
    # The same file name with other content: the next version, replacing the current one when ready.
    source_name = PurePath(name).name[:255]
    version, current_title = next_version(source_name)
    document = Document(
        title=title or current_title or PurePath(name).stem[:255],
        source_name=source_name,
        version=version,
        content_hash=digest,
        size=size,
        mime_type=SUPPORTED_TYPES[PurePath(name).suffix.lower()],
        uploaded_by=user if getattr(user, "pk", None) else None,
    )
    try:
        with transaction.atomic():
            content = ContentFile(data) if isinstance(data, bytes) else data
            document.file.save(PurePath(name).name, content, save=False)
            document.save()
    except IntegrityError:  # the same content uploaded concurrently
        document.file.delete(save=False)
        raise DuplicateDocument(name, Document.objects.get(content_hash=digest)) from None
    if enqueue:
        transaction.on_commit(lambda: enqueue_document(document.pk))
    return document


def _file_hash(file: File) -> str:
    """``content_hash`` of a file, read in chunks."""
    digest = hashlib.sha256()
    for chunk in file.chunks():
        digest.update(chunk)
    return digest.hexdigest()
