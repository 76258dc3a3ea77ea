"""Decompression bombs fail their document as too large, in bounded time and memory.

The files are generated here: a .docx is a ZIP of XML, and a PDF page's content stream is
zlib-compressed; both compress a repeated pattern about a thousandfold. Memory is measured on the
extraction child process, as the child reports it (its VmHWM, the high-water mark of its own
memory, at its end: out of memory included, as it reports that too).
"""

from __future__ import annotations

import io
import time
import zipfile
import zlib

import pytest

from apps.knowledge.documents import add_document
from apps.knowledge.extraction import ExtractionError, extract_text
from apps.knowledge.extraction.sandbox import ExtractionLimits, IsolatedExtractionError, extract_text_limited
from apps.knowledge.pipeline import process_document

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_in_tmp")]

MB = 1024 * 1024
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="word/document.xml"/></Relationships>'
)


def docx_bomb(xml_bytes: int) -> bytes:
    """A valid .docx whose word/document.xml is ``xml_bytes`` of identical paragraphs."""
    head = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{_W}"><w:body>'.encode()
    paragraph = b"<w:p><w:r><w:t>the same words again and again</w:t></w:r></w:p>"
    tail = b"</w:body></w:document>"
    count = (xml_bytes - len(head) - len(tail)) // len(paragraph)
    block = paragraph * 10_000
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(head)
            for _ in range(count // 10_000):
                member.write(block)
            member.write(paragraph * (count % 10_000))
            member.write(tail)
    return out.getvalue()


def pdf_bomb(expanded: int) -> bytes:
    """A one-page PDF whose FlateDecode content stream expands to about ``expanded`` bytes."""
    block = b"BT /F1 12 Tf 72 720 Td (boom) Tj ET\n" * 65_536
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(block) for _ in range(expanded // len(block))) + compressor.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def child_peak_rss(name: str, data: bytes, limits: ExtractionLimits) -> int:
    """The peak RSS of the extraction child that refuses ``data``."""
    with pytest.raises(IsolatedExtractionError) as info:
        extract_text_limited(name, data, max_bytes=25 * MB, limits=limits)
    assert info.value.code == "too_large" and info.value.usage.peak_rss_bytes is not None
    return info.value.usage.peak_rss_bytes


@pytest.fixture(scope="module")
def docx_450mb() -> bytes:
    data = docx_bomb(450 * MB)
    assert 1 * MB < len(data) < 2 * MB  # the reported file: 1.4 MB of ZIP
    return data


def test_a_docx_expanding_to_450_mb_fails_as_too_large_in_seconds_and_little_memory(docx_450mb, settings):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "MAX_UPLOAD_BYTES": 25 * MB}
    document = add_document(name="bomb.docx", data=docx_450mb)
    started = time.monotonic()
    done = process_document(document.pk)
    seconds = time.monotonic() - started
    assert done.status == "failed" and done.chunks.count() == 0
    assert done.error_message == "bomb.docx: the .docx is too large: it expands to 450 MB, over the 100 MB limit"
    assert seconds < 60  # generous: it is refused from the ZIP's directory (the worker took 8+ minutes)
    # The child never parsed it (the worker reached 6.2 GB).
    assert child_peak_rss("bomb.docx", docx_450mb, ExtractionLimits()) < 300 * MB


def test_a_docx_under_the_cap_that_needs_more_memory_than_the_limit_is_too_large(settings):
    limit = 256 * MB
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "MAX_UPLOAD_BYTES": 25 * MB, "EXTRACTION_MEMORY_BYTES": limit}
    data = docx_bomb(60 * MB)  # under the 100 MB expansion cap; lxml's tree of it is several times that
    document = add_document(name="dense.docx", data=data)
    done = process_document(document.pk)
    assert done.status == "failed"
    assert done.error_message == "dense.docx: too large to extract: it needs more than 256 MB of memory"
    assert child_peak_rss("dense.docx", data, ExtractionLimits(memory_bytes=limit)) <= limit


def test_the_limits_leave_an_ordinary_large_docx_alone():
    # 8 MB of XML (thousands of pages) parses within the default limits.
    extracted, usage = extract_text_limited(
        "long.docx", docx_bomb(8 * MB), max_bytes=25 * MB, limits=ExtractionLimits()
    )
    assert extracted.text.startswith("the same words again and again\n\n") and usage.isolated
    assert usage.peak_rss_bytes is not None and 64 * MB < usage.peak_rss_bytes < ExtractionLimits().memory_bytes


def test_a_pdf_decompression_bomb_is_too_large_not_damaged(settings):
    data = pdf_bomb(200 * MB)
    assert len(data) < 1 * MB
    with pytest.raises(ExtractionError) as info:
        extract_text("bomb.pdf", data, max_bytes=25 * MB)
    assert info.value.code == "too_large"
    document = add_document(name="bomb.pdf", data=data)
    done = process_document(document.pk)
    assert done.status == "failed" and "damaged" not in done.error_message
    assert done.error_message == (
        "bomb.pdf: the PDF is too large: the content of page 1 expands past the PDF reader's limit"
    )


def test_extraction_past_its_time_limit_is_too_large(settings):
    # One CPU second cannot parse 90 MB of XML (the cap at a 25 MB upload limit is 100 MB).
    knowledge = {"MAX_UPLOAD_BYTES": 25 * MB, "EXTRACTION_TIMEOUT": 1, "EXTRACTION_MEMORY_BYTES": 8192 * MB}
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, **knowledge}
    document = add_document(name="slow.docx", data=docx_bomb(90 * MB))
    done = process_document(document.pk)
    assert done.status == "failed"
    assert done.error_message == "slow.docx: too large or too complex to extract: more than 1 s"


def test_plain_text_is_read_in_process_and_the_others_in_a_child():
    _, usage = extract_text_limited("a.txt", b"plain words", max_bytes=MB, limits=ExtractionLimits())
    assert not usage.isolated
    _, usage = extract_text_limited("a.html", b"<p>plain words</p>", max_bytes=MB, limits=ExtractionLimits())
    assert usage.isolated and usage.peak_rss_bytes
