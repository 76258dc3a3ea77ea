"""PDF -> the text of its text layer (no OCR), with the page count, the title and pypdf's repairs."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from apps.knowledge.extraction.errors import _describe, _plural, _Refused
from apps.knowledge.extraction.text import _looks_like, _normalise


class _ThreadWarnings(logging.Handler):
    """pypdf's repair notices (it logs them) raised by this thread, not by concurrent ones."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    logger = logging.getLogger("pypdf")
    handler = _ThreadWarnings()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _pdf_text(data: bytes, warnings: list[str], page_texts: list[str] | None = None) -> tuple[str, int, str | None]:
    """The text, page count and title; ``page_texts`` receives each page's text ("" if it has none)."""
    if b"%PDF-" not in data[:1024]:
        what = _looks_like(data)
        raise _Refused("corrupt", f"not a PDF file{f' (this is {what})' if what else ''}")
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    with _pypdf_warnings() as repairs:
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                # Many PDFs are "encrypted" with an empty user password only to carry permission
                # flags: they open in any viewer without asking, so they must open here too.
                if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                    raise _Refused(
                        "encrypted", "the PDF is password-protected; remove the password and upload it again"
                    )
                warnings.append("PDF is encrypted with an empty password; opened without one")
            page_count = len(reader.pages)
            title = _pdf_title(reader)
        except _Refused:
            raise
        except (FileNotDecryptedError, DependencyError) as exc:
            raise _Refused("encrypted", f"the PDF is encrypted and cannot be opened ({exc})") from exc
        except LimitReachedError as exc:
            raise _Refused(
                "too_large", f"the PDF is too large: it exceeds a safety limit of the PDF reader ({exc})"
            ) from exc
        except Exception as exc:  # pypdf raises many types on malformed input
            raise _Refused("corrupt", f"damaged PDF, cannot be read ({_describe(exc)})") from exc

        texts: list[str] = []
        failed: list[int] = []
        empty = 0
        for number, page in enumerate(reader.pages, 1):
            try:
                page_text = page.extract_text()
            except LimitReachedError as exc:
                # A decompression bomb, not damage: the page's content expands past pypdf's cap.
                raise _Refused(
                    "too_large",
                    f"the PDF is too large: the content of page {number} expands past the PDF reader's limit",
                ) from exc
            except MemoryError:
                raise  # the sandbox reports it as too large
            except Exception:  # one bad page must not lose the rest of the document
                failed.append(number)
                page_text = None
            if page_texts is not None:
                page_texts.append(page_text or "")
            if page_text is None:
                continue
            if page_text.strip():
                texts.append(page_text)
            else:
                empty += 1
    if failed and len(failed) == page_count:
        raise _Refused("corrupt", f"damaged PDF, no page could be read ({_plural(page_count, 'page')})")
    if failed:
        warnings.append(f"text of {_plural(len(failed), 'page')} could not be read: {_page_list(failed)}")
    if texts and empty:
        warnings.append(f"{empty} of {page_count} pages have no text layer (scanned or images only?); not extracted")
    if repairs:
        warnings.append(
            f"PDF has structural errors; read anyway ({_plural(len(repairs), 'problem')}, first: {repairs[0]})"
        )
    return "\n\n".join(texts), page_count, title


def _page_starts(page_texts: list[str], text: str) -> list[int] | None:
    """Where each page starts in ``text`` (the normalised join of the pages), for page n at index
    n - 1; a page without text starts where the next one does. None if the pages do not add up
    to ``text``: no page numbers is better than wrong ones."""
    starts: list[int] = []
    kept: list[str] = []
    offset = 0
    for page in page_texts:
        starts.append(offset)
        normalised = _normalise(page, [])  # its warnings were given for the whole text
        if normalised:
            kept.append(normalised)
            offset += len(normalised) + 2  # the blank line joining pages
    return starts if "\n\n".join(kept) == text else None


def _pdf_title(reader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # metadata is optional: a damaged /Info must not fail the document
        return None
    return title.strip() if isinstance(title, str) and title.strip() else None


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
