"""Adding documents: the one way in for the admin, the upload page and ``ingest_documents``."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from apps.knowledge.conf import knowledge_settings
from apps.knowledge.extraction import SUPPORTED_TYPES, ExtractionError, content_hash
from apps.knowledge.models import Document


class DuplicateDocument(Exception):
    def __init__(self, name: str, existing: Document):
        super().__init__(
            f"{name}: the same content is already in the knowledge base as “{existing.title}” "
            f"(document {existing.pk}); it is not embedded twice."
        )
        self.existing = existing


def check_upload(name: str, size: int) -> None:
    """Refuse what can never be processed before storing it (type and size)."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        raise ExtractionError(
            "unsupported_type",
            f"{name}: unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_TYPES)}",
        )
    limit = knowledge_settings().max_upload_bytes
    if size > limit:
        raise ExtractionError("too_large", f"{name}: {size / 1e6:.1f} MB is over the {limit / 1e6:.0f} MB limit")


def add_document(*, name: str, data: bytes, title: str = "", user: Any = None) -> Document:
    """Store the file and queue it for processing (once the transaction commits)."""
    # Imported here: the actor module declares its queue on the broker when imported.
    from apps.knowledge.tasks import enqueue_document

    check_upload(name, len(data))
    digest = content_hash(data)
    existing = Document.objects.filter(content_hash=digest).first()
    if existing is not None:
        raise DuplicateDocument(name, existing)
    document = Document(
        title=title or PurePath(name).stem[:255],
        content_hash=digest,
        size=len(data),
        mime_type=SUPPORTED_TYPES[PurePath(name).suffix.lower()],
        uploaded_by=user if getattr(user, "pk", None) else None,
    )
    try:
        with transaction.atomic():
            document.file.save(PurePath(name).name, ContentFile(data), save=False)
            document.save()
    except IntegrityError:  # the same content uploaded concurrently
        document.file.delete(save=False)
        raise DuplicateDocument(name, Document.objects.get(content_hash=digest)) from None
    transaction.on_commit(lambda: enqueue_document(document.pk))
    return document
