"""Uploaded document bytes -> plain text, or an error a person can act on.

    from apps.knowledge.extraction import ExtractionError, content_hash, extract_text
    try:
        extracted = extract_text("report.pdf", data, max_bytes=20 * 1024 * 1024)
    except ExtractionError as exc:
        document.fail(exc.code, str(exc))      # "report.pdf: the PDF is password-protected; ..."
    else:
        extracted.text, extracted.warnings     # warnings: what was guessed or repaired

Supported: ``.txt``, ``.md`` (kept as written: markup is meaningful text), ``.html``/``.htm``
(visible text only), ``.pdf`` (the text layer; no OCR) and ``.docx``. The type is taken from the
file name's extension, then checked against the bytes: a PNG named ``.txt`` is refused as binary,
a Word file named ``.pdf`` as corrupt, with what it looks like.

Text files are UTF-8 unless a byte order mark (or, in HTML, a ``<meta charset>``) says otherwise.
Bytes that are not UTF-8 are never dropped silently: a file with no valid UTF-8 sequence at all
is decoded with the 8-bit encoding charset-normalizer detects (``cp1252`` when several fit
equally: the Western European encodings agree on most letters and it is the most common), and a
UTF-8 file with a few bad bytes keeps U+FFFD in their place; both add a warning.

The text is normalised the same way for every type, so chunk offsets and de-duplication do not
depend on the source format: line endings become ``\\n``, runs of spaces and tabs one space, lines
are stripped, a blank line separates paragraphs, Unicode is NFC with the typographic ligatures
(``ﬁ``) spelled out, and NUL and other control characters are removed (PostgreSQL text cannot
hold NUL; the others are invisible noise to an embedding model).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Literal

__all__ = [
    "SUPPORTED_TYPES",
    "ErrorCode",
    "ExtractedText",
    "ExtractionError",
    "content_hash",
    "extract_text",
]

#: Extension (lower case, with the dot) -> the MIME type recorded for the document.
SUPPORTED_TYPES: dict[str, str] = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}

ErrorCode = Literal["unsupported_type", "empty", "too_large", "binary", "no_text_layer", "encrypted", "corrupt"]


class ExtractionError(ValueError):
    """The document cannot be turned into text; ``str(exc)`` says why, naming the file.

    ``code`` is stable for programs (one of ``ErrorCode``); the message is for people.
    """

    def __init__(self, code: ErrorCode, message: str, *, filename: str = "") -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.filename = filename


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
    try:
        if extension == ".pdf":
            raw, pages, title = _pdf_text(data, warnings)
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
    return ExtractedText(text=text, mime_type=mime_type, warnings=warnings, pages=pages, title=title or None)


class _Refused(Exception):
    """Raised inside the format readers; turned into an ExtractionError naming the file."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: ErrorCode = code
        self.detail = detail


def _supported_list() -> str:
    return ", ".join(SUPPORTED_TYPES)


def _size(n: int) -> str:
    if n < 1024:
        return _plural(n, "byte")
    value = n / 1024
    for unit in ("KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- what binary data looks like ---------------------------------------------------------------

# Formats people upload by mistake, by their first bytes: named in the error so the person knows
# what they sent (a .docx renamed .pdf, a screenshot saved as .txt).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive such as .docx, .xlsx or .zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file such as .doc or .xls"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x7fELF", "an executable"),
    (b"{\\rtf", "an RTF document"),
)

# C0 controls other than tab, line feed, vertical tab, form feed, carriage return and escape
# (escape starts the ANSI colour codes of captured terminal logs, which are text), and DEL.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
# Text has essentially none; any binary format has several percent (uniform bytes: 10.5%).
_BINARY_CONTROL_SHARE = 0.02


def _looks_like(data: bytes) -> str | None:
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            return what
    return None


def _refuse_binary(data: bytes) -> None:
    what = _looks_like(data)
    if what is not None:
        raise _Refused("binary", f"this is {what}, not text")
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > _BINARY_CONTROL_SHARE * len(data):
        nuls = data.count(0)
        detail = f"{nuls} NUL bytes" if nuls else f"{controls} control characters"
        raise _Refused("binary", f"binary data, not text ({detail} in {_size(len(data))})")


# --- decoding ----------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Preferred when charset-normalizer finds several 8-bit encodings equally plausible: they agree on
# most letters, and this is the one Windows and the HTML standard default to in the West.
_PREFERRED_LEGACY = "cp1252"
# WHATWG encoding standard: these labels mean windows-1252 in HTML.
_HTML_LATIN1_LABELS = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii"})
_SURROGATE_ESCAPES = {0xDC80 + i: "\ufffd" for i in range(128)}
_LONE_SURROGATE = re.compile("[\udc80-\udcff]")


def _decode(data: bytes, warnings: list[str], declared: str | None = None) -> str:
    """Bytes of a text file -> str, saying in ``warnings`` whatever was not plain UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data[len(bom) :].decode(encoding, errors="replace")
            bad = text.count("\ufffd")
            if bad:
                warnings.append(f"invalid {encoding.upper()} replaced ({_plural(bad, 'character')})")
            # The byte test does not apply to UTF-16/32 (every ASCII letter has a NUL byte).
            _refuse_binary_text(text)
            return text

    _refuse_binary(data)
    if declared is not None and declared != "utf-8":
        try:
            return data.decode(declared)
        except UnicodeDecodeError:
            warnings.append(f"declared {declared} but the bytes do not match it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass

    escaped = data.decode("utf-8", errors="surrogateescape")
    invalid = len(_LONE_SURROGATE.findall(escaped))
    valid_non_ascii = len(escaped) - len(escaped.encode("ascii", "ignore")) - invalid
    # Valid multi-byte sequences almost never occur by chance in 8-bit text: if there are as many
    # as there are bad bytes, this is UTF-8 with damage, and guessing another encoding would
    # garble every correct character to save a few wrong ones.
    if valid_non_ascii < invalid:
        legacy = _detect_legacy_encoding(data)
        if legacy is not None:
            text = data.decode(legacy, errors="replace")
            warnings.append(f"not valid UTF-8; decoded as {legacy} (detected)")
            bad = text.count("\ufffd")
            if bad:
                warnings.append(f"invalid {legacy} replaced ({_plural(bad, 'character')})")
            return text
    text = escaped.translate(_SURROGATE_ESCAPES)
    if invalid > 0.1 * len(text):
        raise _Refused("binary", f"binary data, not text ({invalid} of {len(data)} bytes are not UTF-8)")
    warnings.append(f"invalid UTF-8 replaced ({_plural(invalid, 'byte')})")
    return text


def _detect_legacy_encoding(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(data) if not m.encoding.startswith(("utf", "ascii"))]
    if not matches:
        return None
    least_chaos = min(m.percent_chaos for m in matches)
    tied = [m.encoding for m in matches if m.percent_chaos <= least_chaos]
    if _PREFERRED_LEGACY in tied:
        return _PREFERRED_LEGACY
    best = tied[0]
    try:
        # Same text either way: report the encoding people know.
        if data.decode(_PREFERRED_LEGACY) == data.decode(best):
            return _PREFERRED_LEGACY
    except UnicodeDecodeError:
        pass
    return best


def _refuse_binary_text(text: str) -> None:
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\x0b\x0c\r\x1b")
    if controls > _BINARY_CONTROL_SHARE * max(len(text), 1):
        raise _Refused("binary", f"binary data, not text ({controls} control characters)")


# --- normalisation -----------------------------------------------------------------------------

_CONTROL_CHARS = "".join(chr(c) for c in (*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)) if c != 0x85)
_DELETE_CONTROLS = str.maketrans("", "", _CONTROL_CHARS)
_CHARACTER_MAP = str.maketrans(
    {
        "\r": "\n",
        "\x0b": "\n",
        "\x0c": "\n\n",  # form feed: a page break
        "\x85": "\n",
        "\u2028": "\n",
        "\u2029": "\n\n",
        # Invisible: soft hyphen, zero-width space, byte order mark / zero-width no-break space.
        "\u00ad": None,
        "\u200b": None,
        "\ufeff": None,
        # Typographic ligatures, common in PDF text layers: "ﬁnd" must match "find".
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def _normalise(text: str, warnings: list[str]) -> str:
    text = text.replace("\r\n", "\n")
    cleaned = text.translate(_DELETE_CONTROLS)
    removed = len(text) - len(cleaned)
    if removed:
        nuls = text.count("\x00")
        detail = f" ({nuls} NUL)" if nuls else ""
        warnings.append(f"removed {_plural(removed, 'control character')}{detail}")
    text = unicodedata.normalize("NFC", cleaned.translate(_CHARACTER_MAP))
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


# --- HTML --------------------------------------------------------------------------------------

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9._:-]+)""",
    re.IGNORECASE,
)
# Never shown by a browser (or not part of the page's content: navigation menus are repeated on
# every page of a site and would make every document match every menu word).
_SKIPPED_TAGS = frozenset(
    {"head", "script", "style", "noscript", "template", "nav", "svg", "canvas", "iframe", "object", "embed", "select"}
)
_PARAGRAPH, _LINE, _CELL = 3, 2, 1
_BLOCK_TAGS: dict[str, int] = {
    **dict.fromkeys(
        (
            "address article aside blockquote body caption center details dialog div dl fieldset figcaption "
            "figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend main menu ol p pre section "
            "summary table ul"
        ).split(),
        _PARAGRAPH,
    ),
    **dict.fromkeys("li dt dd tr".split(), _LINE),
}
_BREAK_TEXT = {_PARAGRAPH: "\n\n", _LINE: "\n", _CELL: " | "}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_HTML_SPACE = re.compile(r"\s+")


def _html_text(data: bytes, warnings: list[str]) -> tuple[str, str | None]:
    from bs4 import BeautifulSoup

    markup = _decode(data, warnings, declared=_html_declared_encoding(data))
    soup = BeautifulSoup(markup, "lxml")
    # The document's <title>, not an SVG's.
    title_tag = soup.head.title if soup.head is not None else None
    title = title_tag.get_text(" ", strip=True) if title_tag is not None else None
    return _visible_text(soup), title


def _html_declared_encoding(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if match is None:
        return None
    label = (match.group(1) or match.group(2)).decode("ascii").lower()
    if label in _HTML_LATIN1_LABELS:
        return _PREFERRED_LEGACY
    import codecs

    try:
        name = codecs.lookup(label).name
    except LookupError:  # an unknown label is ignored, as browsers do
        return None
    # A <meta> readable as ASCII means the bytes are not UTF-16, whatever it claims (WHATWG).
    return "utf-8" if name.startswith("utf-16") or name == "utf-8" else name


def _visible_text(soup) -> str:  # type: ignore[no-untyped-def]
    """The text a browser shows, with block elements as paragraphs and table cells ``|``-separated."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    pieces: list[str | int] = []  # text, or the strength of a break
    in_pre = 0
    # Iterative: documents nested thousands deep (generated markup) must not hit the recursion limit.
    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            assert isinstance(node, Tag)
            pieces.append(_BLOCK_TAGS[node.name])
            if node.name == "pre":
                in_pre -= 1
            continue
        if isinstance(node, NavigableString):
            if isinstance(node, PreformattedString):  # comments, CDATA, doctype, processing instructions
                continue
            if in_pre:
                for i, line in enumerate(str(node).split("\n")):
                    if i:
                        pieces.append(_LINE)
                    pieces.append(line)
            else:
                pieces.append(_HTML_SPACE.sub(" ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if name in _SKIPPED_TAGS or _is_hidden(node):
            continue
        if name == "br":
            pieces.append(_LINE)
            continue
        if name in ("td", "th"):
            pieces.append(_CELL)
        block = _BLOCK_TAGS.get(name)
        if block is not None:
            pieces.append(block)
            stack.append((node, True))
            if name == "pre":
                in_pre += 1
        stack.extend((child, False) for child in reversed(node.contents))

    out: list[str] = []
    pending = 0
    for piece in pieces:
        if isinstance(piece, int):
            pending = max(pending, piece)
        elif piece:
            if pending and piece.isspace():
                # Source indentation between blocks: a break is already due, and it is not text.
                continue
            if pending and out:
                out.append(_BREAK_TEXT[pending])
            pending = 0
            out.append(piece)
    return "".join(out)


def _is_hidden(tag) -> bool:  # type: ignore[no-untyped-def]
    attrs = tag.attrs
    if not attrs:
        return False
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style) and _HIDDEN_STYLE.search(str(style)) is not None


# --- PDF ---------------------------------------------------------------------------------------


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


def _pdf_text(data: bytes, warnings: list[str]) -> tuple[str, int, str | None]:
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
                    raise _Refused("encrypted", "the PDF is password-protected; remove the password and upload it again")
                warnings.append("PDF is encrypted with an empty password; opened without one")
            page_count = len(reader.pages)
            title = _pdf_title(reader)
        except _Refused:
            raise
        except (FileNotDecryptedError, DependencyError) as exc:
            raise _Refused("encrypted", f"the PDF is encrypted and cannot be opened ({exc})") from exc
        except LimitReachedError as exc:
            raise _Refused("too_large", f"the PDF exceeds a safety limit of the PDF reader ({exc})") from exc
        except Exception as exc:  # pypdf raises many types on malformed input
            raise _Refused("corrupt", f"damaged PDF, cannot be read ({_describe(exc)})") from exc

        texts: list[str] = []
        failed: list[int] = []
        empty = 0
        for number, page in enumerate(reader.pages, 1):
            try:
                page_text = page.extract_text()
            except Exception:  # one bad page must not lose the rest of the document
                failed.append(number)
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
        warnings.append(f"PDF has structural errors; read anyway ({_plural(len(repairs), 'problem')}, first: {repairs[0]})")
    return "\n\n".join(texts), page_count, title


def _pdf_title(reader) -> str | None:  # type: ignore[no-untyped-def]
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # metadata is optional: a damaged /Info must not fail the document
        return None
    return title.strip() if isinstance(title, str) and title.strip() else None


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- DOCX --------------------------------------------------------------------------------------

# A .docx is a ZIP of XML; python-docx reads every part into memory. A crafted file can expand
# a thousandfold (a "zip bomb"); real ones, images included, stay well under this ratio.
_DOCX_MAX_EXPANSION = 20
_DOCX_MIN_UNCOMPRESSED_LIMIT = 64 * 1024 * 1024
# Password-protected Office files are not ZIPs but OLE containers holding this stream.
_OLE_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_OTHER_OFFICE_PARTS = {
    "xl/workbook.xml": "an Excel workbook (.xlsx)",
    "ppt/presentation.xml": "a PowerPoint presentation (.pptx)",
    "content.xml": "an OpenDocument file (.odt, .ods)",
}


def _docx_text(data: bytes, max_bytes: int, warnings: list[str]) -> tuple[str, str | None]:
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        if _OLE_ENCRYPTED_PACKAGE in data:
            raise _Refused("encrypted", "the document is password-protected; remove the password and upload it again")
        raise _Refused("corrupt", "this is a legacy Word file (.doc), not .docx; save it as .docx and upload it again")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data.startswith(b"PK"):
            raise _Refused("corrupt", "not a .docx file (a damaged or truncated ZIP archive)")
        what = _looks_like(data)
        raise _Refused("corrupt", f"not a .docx file (not a ZIP archive{f'; this is {what}' if what else ''})")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _Refused("corrupt", f"damaged .docx ({_describe(exc)})") from exc
    limit = max(_DOCX_MAX_EXPANSION * max_bytes, _DOCX_MIN_UNCOMPRESSED_LIMIT)
    if expanded > limit:
        raise _Refused("too_large", f"the .docx expands to {_size(expanded)}, over the {_size(limit)} limit")
    for part, what in _OTHER_OFFICE_PARTS.items():
        if part in names and "word/document.xml" not in names:
            raise _Refused("corrupt", f"this is {what}, not a Word document")
    if "[Content_Types].xml" not in names:
        raise _Refused("corrupt", "a ZIP archive, not a Word document")

    from docx import Document

    try:
        document = Document(io.BytesIO(data))
        blocks = list(_docx_blocks(document))
        title = (document.core_properties.title or "").strip() or None
    except Exception as exc:  # python-docx and lxml raise many types on malformed parts
        raise _Refused("corrupt", f"damaged .docx, cannot be read ({_describe(exc)})") from exc
    return "\n\n".join(block for block in blocks if block.strip()), title


def _docx_blocks(container) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Paragraphs and tables in document order; a table is one block, a row per line."""
    from docx.table import Table

    for item in container.iter_inner_content():
        if isinstance(item, Table):
            yield _docx_table(item)
        else:
            yield item.text


def _docx_table(table) -> str:  # type: ignore[no-untyped-def]
    rows: list[str] = []
    # The elements themselves, not their id(): lxml may hand out a new proxy (and reuse an id)
    # for an element nobody references.
    seen: set[object] = set()
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            # Merged cells come back once per grid column (and per row for vertical merges): the
            # text is emitted once, where the merged cell starts.
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            text = " ".join(" ".join(block.split()) for block in _docx_blocks(cell) if block.strip())
            if text:
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)
