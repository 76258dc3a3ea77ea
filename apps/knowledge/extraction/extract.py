"""The entry point: the extractor chosen by the file name's extension, the limits every file is held
to, and the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePath

from apps.knowledge.extraction.docx import _docx_text
from apps.knowledge.extraction.errors import ExtractionError, _plural, _Refused, _size
from apps.knowledge.extraction.html import _html_text
from apps.knowledge.extraction.pdf import _page_starts, _pdf_text
from apps.knowledge.extraction.text import _decode, _normalise

#: Extension (lower case, with the dot) -> the MIME type recorded for the document.
SUPPORTED_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@dataclass(frozen=True, slots=True)
class ExtractedText:
    text: str
    mime_type: str
    #: Things a person should know about the result: guessed encodings, replaced bytes, pages
    #: without text, repairs. Empty when the file was read exactly as written.
    warnings: list[str] = field(default_factory=list)
    #: Pages of a PDF; None for the other types (they have no fixed pages).
    pages: int | None = None
    #: The title the file declares (PDF and .docx metadata, HTML ``<title>``), if any. It is
    #: metadata, not part of ``text``.
    title: str | None = None
    #: PDF: where each page starts in ``text`` (page n at index n - 1), to give a chunk its page;
    #: None for the other types, and for a PDF whose pages could not be told apart.
    page_starts: list[int] | None = None


def content_hash(data: bytes) -> str:
    """SHA-256 of the uploaded bytes, hex: equal for byte-identical uploads (de-duplication)."""
    return hashlib.sha256(data).hexdigest()


def extract_text(name: str, data: bytes, *, max_bytes: int) -> ExtractedText:
    """The text of the file ``name`` (used for its extension and in messages) with content ``data``.

    Raises ``ExtractionError`` for an unsupported extension, a file over ``max_bytes``, an empty
    file, binary data under a text extension, a PDF without a text layer, a password-protected
    PDF or .docx, and a damaged file; and when nothing but whitespace is left after extraction.
    """
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    display = PurePath(name).name or name
    extension = PurePath(display).suffix.lower()
    mime_type = SUPPORTED_TYPES.get(extension)
    if mime_type is None:
        what = f"unsupported file type {extension}" if extension else "no file extension"
        raise ExtractionError(
            "unsupported_type", f"{display}: {what}; supported: {_supported_list()}", filename=display
        )
    if len(data) > max_bytes:
        raise ExtractionError(
            "too_large",
            f"{display}: {_size(len(data))} is over the {_size(max_bytes)} limit",
            filename=display,
        )
    if not data:
        raise ExtractionError("empty", f"{display}: the file is empty (0 bytes)", filename=display)

    warnings: list[str] = []
    pages: int | None = None
    title: str | None = None
    page_texts: list[str] = []
    try:
        if extension == ".pdf":
            raw, pages, title = _pdf_text(data, warnings, page_texts)
        elif extension == ".docx":
            raw, title = _docx_text(data, max_bytes, warnings)
        elif mime_type == "text/html":
            raw, title = _html_text(data, warnings)
        else:
            raw = _decode(data, warnings)
    except _Refused as refused:
        raise ExtractionError(refused.code, f"{display}: {refused.detail}", filename=display) from refused.__cause__

    text = _normalise(raw, warnings)
    if not text:
        if extension == ".pdf":
            raise ExtractionError(
                "no_text_layer",
                f"{display}: no text layer in {_plural(pages or 0, 'page')} (scanned or images only?); "
                "text recognition (OCR) is not supported",
                filename=display,
            )
        raise ExtractionError("empty", f"{display}: no text in the file (only whitespace or markup)", filename=display)
    page_starts = _page_starts(page_texts, text) if extension == ".pdf" else None
    return ExtractedText(
        text=text, mime_type=mime_type, warnings=warnings, pages=pages, title=title or None, page_starts=page_starts
    )


def _supported_list() -> str:
    return ", ".join(SUPPORTED_TYPES)
