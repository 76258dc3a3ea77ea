"""Document bytes -> text: every supported format on real files, and every way a file can be refused.

The files under tests/fixtures/documents are made by generate.py there (hand-written PDFs,
python-docx, stdlib docstrings); other inputs are built in the tests.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import zipfile

import pytest

from apps.knowledge.extraction import (
    SUPPORTED_TYPES,
    ExtractedText,
    ExtractionError,
    content_hash,
    extract_text,
)
from tests.helpers import DOCUMENTS

LIMIT = 10 * 1024 * 1024
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def fixture(name: str) -> bytes:
    return (DOCUMENTS / name).read_bytes()


def extract(name: str, data: bytes, max_bytes: int = LIMIT) -> ExtractedText:
    return extract_text(name, data, max_bytes=max_bytes)


def refused(name: str, data: bytes, max_bytes: int = LIMIT) -> ExtractionError:
    with pytest.raises(ExtractionError) as info:
        extract_text(name, data, max_bytes=max_bytes)
    return info.value


def docx_bytes(build) -> bytes:  # type: ignore[no-untyped-def]
    from docx import Document

    document = Document()
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --- types, sizes, hashes ----------------------------------------------------------------------


def test_supported_types():
    assert SUPPORTED_TYPES == {
        ".txt": "text/plain",
        ".md": "text/markdown",
        ".html": "text/html",
        ".htm": "text/html",
        ".pdf": "application/pdf",
        ".docx": DOCX_MIME,
    }


def test_unsupported_extension_names_the_file_and_the_supported_types():
    error = refused("report.xlsx", b"PK\x03\x04whatever")
    assert isinstance(error, ValueError)
    assert error.code == "unsupported_type"
    assert error.filename == "report.xlsx"
    assert str(error) == "report.xlsx: unsupported file type .xlsx; supported: .txt, .md, .html, .htm, .pdf, .docx"


def test_missing_extension_and_path_components():
    assert (
        str(refused("README", b"text")) == "README: no file extension; supported: .txt, .md, .html, .htm, .pdf, .docx"
    )
    # Only the file's own name is shown (not a client's directory layout).
    assert str(refused("uploads/2026/old.doc", b"x")).startswith("old.doc: unsupported file type .doc;")


def test_extension_is_case_insensitive():
    result = extract("NOTES.TXT", b"Upper-case extensions are common on Windows.")
    assert result.mime_type == "text/plain"


def test_too_large_is_checked_before_parsing():
    data = b"%PDF-1.4 not really a pdf" + b"x" * 2000
    error = refused("big.pdf", data, max_bytes=1024)
    assert error.code == "too_large"
    assert str(error) == "big.pdf: 2 KB is over the 1 KB limit"
    assert refused("big.txt", b"a" * (3 * 1024 * 1024 + 1), max_bytes=3 * 1024 * 1024).code == "too_large"
    # The limit itself is allowed.
    assert extract("exact.txt", b"a" * 1024, max_bytes=1024).text == "a" * 1024


def test_max_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_bytes"):
        extract_text("a.txt", b"a", max_bytes=0)


def test_content_hash_is_sha256_of_the_bytes():
    data = fixture("heapq.pdf")
    assert content_hash(data) == hashlib.sha256(data).hexdigest()
    assert content_hash(bytes(data)) == content_hash(data)
    assert content_hash(data + b"\n") != content_hash(data)
    assert len(content_hash(b"")) == 64


# --- empty and binary --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.html", "empty.pdf", "empty.docx"])
def test_empty_file(name):
    error = refused(name, b"")
    assert error.code == "empty"
    assert str(error) == f"{name}: the file is empty (0 bytes)"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("blank.txt", b"  \n\n\t \r\n  "),
        ("bom-only.txt", b"\xef\xbb\xbf"),
        ("markup.html", b"<html><head><title>T</title><script>var a;</script></head><body> <!-- c --> </body></html>"),
    ],
)
def test_nothing_but_whitespace_or_markup_is_empty(name, data):
    error = refused(name, data)
    assert error.code == "empty"
    assert "no text" in str(error)


def test_docx_without_text_is_empty():
    data = docx_bytes(lambda d: d.add_paragraph("   "))
    assert refused("blank.docx", data).code == "empty"


@pytest.mark.parametrize(
    ("name", "data", "detail"),
    [
        ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "this is a PNG image"),
        ("notes.md", fixture("heapq.pdf"), "this is a PDF document"),
        ("page.html", fixture("argparse.docx"), "this is a ZIP archive"),
        ("old.txt", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "legacy Office file"),
    ],
)
def test_known_binary_formats_under_a_text_extension(name, data, detail):
    error = refused(name, data)
    assert error.code == "binary"
    assert detail in str(error)


def test_random_bytes_are_binary():
    data = random.Random(7).randbytes(8192)
    error = refused("data.txt", data)
    assert error.code == "binary"
    assert "binary data, not text" in str(error)


def test_utf16_without_byte_order_mark_is_refused_as_binary():
    error = refused("export.txt", "Exported from a spreadsheet".encode("utf-16-le"))
    assert error.code == "binary"
    assert "NUL bytes" in str(error)


def test_a_few_stray_control_characters_are_removed_and_reported():
    data = b"Heap queues\x00 are arrays\x07 for which a[k] <= a[2*k+1]. " * 3 + b"x" * 2000
    result = extract("log.txt", data)
    assert "\x00" not in result.text and "\x07" not in result.text
    assert result.text.startswith("Heap queues are arrays for which")
    assert result.warnings == ["removed 6 control characters (3 NUL)"]


# --- encodings ---------------------------------------------------------------------------------


def test_plain_utf8_has_no_warnings():
    text = "Naïve café — “quotes”, 中文, emoji 🙂."
    result = extract("a.txt", text.encode())
    assert result == ExtractedText(text=text, mime_type="text/plain", warnings=[], pages=None, title=None)


def test_utf8_byte_order_mark_is_dropped_silently():
    assert extract("bom.txt", b"\xef\xbb\xbfHello").text == "Hello"
    assert extract("bom.txt", b"\xef\xbb\xbfHello").warnings == []


def test_utf16_with_byte_order_mark():
    result = extract("utf16-bom.txt", fixture("utf16-bom.txt"))
    assert result.text == "Heap queues — a[k] <= a[2*k+1]"
    assert result.warnings == []


def test_legacy_cp1252_is_detected_and_reported():
    result = extract("legacy-cp1252.txt", fixture("legacy-cp1252.txt"))
    assert result.warnings == ["not valid UTF-8; decoded as cp1252 (detected)"]
    assert "[explanation by François Pinard]" in result.text
    assert "tableaux “spéciaux” — très utiles à l’école" in result.text
    assert "Ça coûte 5 € à peine" in result.text


def test_legacy_cyrillic_is_detected():
    text = "Привет, как дела? Это тестовый текст на русском языке, и он достаточно длинный. " * 3
    result = extract("ru.txt", text.encode("cp1251"))
    assert result.text == text.strip()
    assert result.warnings == ["not valid UTF-8; decoded as cp1251 (detected)"]


def test_damaged_utf8_keeps_the_good_text_and_says_how_many_bytes_were_replaced():
    result = extract("broken-utf8.txt", fixture("broken-utf8.txt"))
    assert result.warnings == ["invalid UTF-8 replaced (2 bytes)"]
    assert "Stray bytes: \ufffd\ufffd here." in result.text
    # The valid multi-byte characters around the damage are intact (no cp1252 mojibake).
    assert result.text.count("François Pinard’s essay. Naïve café.") == 4


def test_truncated_utf8_sequence_at_the_end():
    result = extract("cut.txt", "Schöne Grüß".encode()[:-1])
    assert result.text == "Schöne Grü\ufffd"
    assert result.warnings == ["invalid UTF-8 replaced (1 byte)"]


# --- normalisation -----------------------------------------------------------------------------


def test_whitespace_and_unicode_are_normalised():
    raw = (
        "  Title  \r\n\r\n\r\n\r\n"
        "First\tline   with\u00a0spaces   \r\n"
        "  second line\rthird line\n\n\n"
        "ﬁnd the ﬂow; cafe\u0301;\u200b zero\u00adwidth\u2029next paragraph\x0cnew page  "
    )
    result = extract("n.txt", raw.encode())
    assert result.text == (
        "Title\n\n"
        "First line with spaces\n"
        "second line\nthird line\n\n"
        "find the flow; café; zerowidth\n\nnext paragraph\n\nnew page"
    )
    assert result.warnings == []


def test_markdown_is_kept_as_written():
    result = extract("textwrap.md", fixture("textwrap.md"))
    assert result.mime_type == "text/markdown"
    assert result.text.startswith(
        "# textwrap\n\nText wrapping and filling, from the module's docstrings.\n\n## `textwrap.wrap`"
    )
    assert "```python\ntextwrap.fill('Hello world', width=5)\n```" in result.text
    assert '>>> textwrap.shorten("Hello world!", width=12)' in result.text
    assert result.warnings == []


# --- HTML --------------------------------------------------------------------------------------


def test_html_visible_text_only():
    result = extract("difflib.html", fixture("difflib.html"))
    assert result.mime_type == "text/html"
    assert result.title == "difflib — Helpers for computing deltas"
    assert "MUST NOT BE EXTRACTED" not in result.text  # head, style, script, nav, comment, noscript, ...
    assert "Home" not in result.text
    paragraphs = result.text.split("\n\n")
    assert paragraphs[0] == "difflib — Helpers for computing deltas"  # the <h1>, entity decoded
    assert paragraphs[1].startswith(
        "This module provides classes and functions for comparing sequences. It can be used"
    )
    assert paragraphs[1].endswith("context and unified diffs & more. Café <b> is not a tag.")
    assert paragraphs[2] == "Inline bold and italic words stay in one paragraph.\nAfter a line break."
    assert "Function get_close_matches(word, possibilities, n=3, cutoff=0.6): Use SequenceMatcher" in paragraphs[3]
    assert "Ratio | Meaning\n0.6 | close enough" in paragraphs
    assert "s = SequenceMatcher(None, a, b)\nprint(s.ratio())" in paragraphs
    assert paragraphs[-1] == "Generated from the difflib module docstring."
    assert result.warnings == []


def test_html_hidden_elements_are_skipped():
    html = (
        b"<p>shown</p><p style='display: none'>css hidden</p><span aria-hidden='true'>icon</span>"
        b"<div hidden><p>hidden</p></div><select><option>choice</option></select><p>end</p>"
    )
    assert extract("h.html", html).text == "shown\n\nend"


def test_html_declared_charset_is_used():
    body = "<p>“Smart quotes” and café</p>"
    declared = f'<html><head><meta charset="windows-1252"></head><body>{body}</body></html>'.encode("cp1252")
    result = extract("w.htm", declared)
    assert result.text == "“Smart quotes” and café"
    assert result.warnings == []
    # The HTML standard reads an ISO-8859-1 label as windows-1252 (0x93 is a quote, not a control).
    latin1 = b'<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1"><p>\x93quoted\x94 caf\xe9</p>'
    assert extract("l.html", latin1).text == "“quoted” café"


def test_html_declared_utf8_that_is_not_utf8_is_reported():
    data = '<meta charset="utf-8"><p>Ça coûte 5 € à peine, voilà pourquoi François les préfère.</p>'.encode("cp1252")
    result = extract("liar.html", data)
    assert result.text == "Ça coûte 5 € à peine, voilà pourquoi François les préfère."
    assert result.warnings == ["not valid UTF-8; decoded as cp1252 (detected)"]


def test_deeply_nested_html():
    html = ("<div>" * 3000 + "deep text" + "</div>" * 3000).encode()
    assert extract("deep.html", html).text == "deep text"


# --- PDF ---------------------------------------------------------------------------------------


def test_pdf_text_layer():
    result = extract("heapq.pdf", fixture("heapq.pdf"))
    assert result.mime_type == "application/pdf"
    assert result.pages == 2
    assert result.title == "Heap queues"
    assert result.warnings == []
    assert result.text.startswith("Heap queues\n[explanation by François Pinard]\nHeaps are arrays for which")
    assert (
        "The strange invariant above is meant to be an efficient memory representation for a\ntournament."
        in result.text
    )
    # Pages are separate paragraphs.
    assert result.text.count("\n\n") == 1


def test_pdf_without_text_layer():
    error = refused("scanned.pdf", fixture("scanned.pdf"))
    assert error.code == "no_text_layer"
    assert str(error) == (
        "scanned.pdf: no text layer in 2 pages (scanned or images only?); text recognition (OCR) is not supported"
    )


def test_pdf_with_some_pages_scanned_is_extracted_with_a_warning():
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(fixture("heapq.pdf"))).pages[0])
    writer.add_page(PdfReader(io.BytesIO(fixture("scanned.pdf"))).pages[0])
    out = io.BytesIO()
    writer.write(out)
    result = extract("mixed.pdf", out.getvalue())
    assert result.pages == 2
    assert "François Pinard" in result.text
    assert result.warnings == ["1 of 2 pages have no text layer (scanned or images only?); not extracted"]


def test_password_protected_pdf_is_refused():
    error = refused("encrypted.pdf", fixture("encrypted.pdf"))
    assert error.code == "encrypted"
    assert str(error) == "encrypted.pdf: the PDF is password-protected; remove the password and upload it again"


def test_pdf_encrypted_with_an_empty_password_is_read():
    result = extract("empty-password.pdf", fixture("empty-password.pdf"))
    assert result.text == extract("heapq.pdf", fixture("heapq.pdf")).text
    assert result.warnings == ["PDF is encrypted with an empty password; opened without one"]


def test_truncated_pdf_is_corrupt():
    error = refused("truncated.pdf", fixture("truncated.pdf"))
    assert error.code == "corrupt"
    assert str(error).startswith("truncated.pdf: damaged PDF, cannot be read (")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Just some text saved as .pdf", "bad.pdf: not a PDF file"),
        (fixture("argparse.docx"), "bad.pdf: not a PDF file (this is a ZIP archive such as .docx, .xlsx or .zip)"),
        (b"%PDF-1.7\n" + bytes(range(256)) * 8, "bad.pdf: damaged PDF, cannot be read ("),
    ],
)
def test_not_a_pdf(data, message):
    error = refused("bad.pdf", data)
    assert error.code == "corrupt"
    assert str(error).startswith(message)


def test_repaired_pdf_says_so():
    pdf = fixture("heapq.pdf")
    damaged = re.sub(rb"startxref\n\d+", b"startxref\n123", pdf)  # wrong cross-reference offset
    result = extract("repaired.pdf", damaged)
    assert result.text == extract("heapq.pdf", pdf).text
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("PDF has structural errors; read anyway (")


# --- DOCX --------------------------------------------------------------------------------------


def test_docx_paragraphs_headings_and_table_in_document_order():
    result = extract("argparse.docx", fixture("argparse.docx"))
    assert result.mime_type == DOCX_MIME
    assert result.pages is None
    assert result.title == "argparse overview"
    assert result.warnings == []
    paragraphs = result.text.split("\n\n")
    assert paragraphs[:5] == [
        "argparse overview",
        "Command-line parsing library",
        "This module is an optparse-inspired command-line parsing library that:",
        "handles both optional and positional arguments",
        "produces highly informative usage messages",
    ]
    table = paragraphs[paragraphs.index("The textwrap module offers these functions:") + 1]
    assert table.splitlines() == [
        "Function | Summary",
        "textwrap.wrap | Wrap a single paragraph of text, returning a list of wrapped lines.",
        "textwrap.fill | Fill a single paragraph of text, returning a new string.",
        "textwrap.shorten | Collapse and truncate the given text to fit in the given width.",
        "textwrap.dedent | Remove any common leading whitespace from every line in `text`.",
    ]
    assert paragraphs.index("Text wrapping helpers") < paragraphs.index(table) < paragraphs.index("Usage")
    assert "The parser is created first.\nArguments are added next, then parse_args() is called." in paragraphs


def test_docx_merged_and_nested_cells_appear_once():
    def build(document):  # type: ignore[no-untyped-def]
        table = document.add_table(rows=3, cols=3)
        wide = table.cell(0, 0).merge(table.cell(0, 2))
        wide.text = "Spans three columns"
        tall = table.cell(1, 0).merge(table.cell(2, 0))
        tall.text = "Spans two rows"
        for row in (1, 2):
            for col in (1, 2):
                table.cell(row, col).text = f"r{row}c{col}"
        inner = table.cell(2, 2).add_table(rows=1, cols=2)
        inner.cell(0, 0).text = "nested a"
        inner.cell(0, 1).text = "nested b"

    text = extract("merged.docx", docx_bytes(build)).text
    assert text.splitlines() == [
        "Spans three columns",
        "Spans two rows | r1c1 | r1c2",
        "r2c1 | r2c2 nested a | nested b",
    ]


def test_docx_that_is_not_a_zip():
    error = refused("letter.docx", b"Dear reader, this is plain text.")
    assert error.code == "corrupt"
    assert str(error) == "letter.docx: not a .docx file (not a ZIP archive)"


def test_legacy_doc_renamed_docx():
    error = refused("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    assert error.code == "corrupt"
    assert "legacy Word file (.doc)" in str(error)


def test_password_protected_docx():
    # Office stores a protected .docx inside an OLE container with an EncryptedPackage stream.
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64) + "EncryptedPackage".encode("utf-16-le") + bytes(64)
    error = refused("secret.docx", data)
    assert error.code == "encrypted"
    assert str(error) == "secret.docx: the document is password-protected; remove the password and upload it again"


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"}, "this is an Excel workbook (.xlsx)"),
        ({"photo.jpg": b"\xff\xd8\xff"}, "a ZIP archive, not a Word document"),
        (
            {"[Content_Types].xml": b"<not xml", "word/document.xml": b"<w:document/>"},
            "damaged .docx, cannot be read (",
        ),
    ],
)
def test_zip_that_is_not_a_word_document(members, message):
    error = refused("x.docx", _zip(members))
    assert error.code == "corrupt"
    assert message in str(error)


def test_truncated_docx_is_corrupt():
    data = fixture("argparse.docx")
    error = refused("cut.docx", data[: len(data) // 2])
    assert error.code == "corrupt"
    assert str(error) == "cut.docx: not a .docx file (a damaged or truncated ZIP archive)"
    assert (
        str(refused("pdf.docx", fixture("heapq.pdf")))
        == "pdf.docx: not a .docx file (not a ZIP archive; this is a PDF document)"
    )


def test_docx_zip_bomb_is_refused_before_expanding():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        with archive.open("word/document.xml", "w") as member:
            for _ in range(70):
                member.write(bytes(1024 * 1024))
    data = out.getvalue()
    assert len(data) < 200_000
    error = refused("bomb.docx", data, max_bytes=1024 * 1024)
    assert error.code == "too_large"
    assert str(error) == "bomb.docx: the .docx is too large: it expands to 70 MB, over the 16 MB limit"
