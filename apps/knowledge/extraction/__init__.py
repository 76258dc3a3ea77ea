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

The package, one concept per module: ``extract`` (``extract_text``, the choice of reader by
extension, the size limit), ``errors`` (``ExtractionError`` and message wording), ``text``
(binary detection, decoding, normalisation) and one reader per format: ``html``, ``pdf``, ``docx``.
"""

from __future__ import annotations

from apps.knowledge.extraction.errors import ErrorCode, ExtractionError
from apps.knowledge.extraction.extract import SUPPORTED_TYPES, ExtractedText, content_hash, extract_text

__all__ = [
    "SUPPORTED_TYPES",
    "ErrorCode",
    "ExtractedText",
    "ExtractionError",
    "content_hash",
    "extract_text",
]
