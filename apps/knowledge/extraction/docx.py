""".docx -> paragraphs and tables in document order, and the title; other Office files are named."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from apps.knowledge.extraction.errors import _describe, _Refused, _size
from apps.knowledge.extraction.text import _looks_like

# A .docx is a ZIP of XML; python-docx reads every part into memory, and lxml's tree takes about
# ten times the XML's size. A crafted file can expand a thousandfold (a "zip bomb"). The cap is on
# the archive's declared sizes, which cannot lie: zipfile stops a member at its declared size and
# then fails its CRC. Real files stay well under a few times the upload limit: images barely
# expand, and text XML compresses about tenfold, so a document at the upload limit would be ten
# thousand pages of text.
_DOCX_MAX_EXPANSION = 4
_DOCX_MIN_UNCOMPRESSED_LIMIT = 16 * 1024 * 1024
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
        raise _Refused(
            "too_large", f"the .docx is too large: it expands to {_size(expanded)}, over the {_size(limit)} limit"
        )
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
        if _lxml_out_of_memory(exc):
            # The sandbox's memory limit, not damage (lxml reports it as a syntax error).
            raise MemoryError("no memory left to parse the .docx's XML") from exc
        raise _Refused("corrupt", f"damaged .docx, cannot be read ({_describe(exc)})") from exc
    return "\n\n".join(block for block in blocks if block.strip()), title


def _lxml_out_of_memory(exc: Exception) -> bool:
    return isinstance(exc, MemoryError) or any(
        entry.type_name == "ERR_NO_MEMORY" for entry in getattr(exc, "error_log", None) or ()
    )


def _docx_blocks(container) -> Iterator[str]:
    """Paragraphs and tables in document order; a table is one block, a row per line."""
    from docx.table import Table

    for item in container.iter_inner_content():
        if isinstance(item, Table):
            yield _docx_table(item)
        else:
            yield item.text


def _docx_table(table) -> str:
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
