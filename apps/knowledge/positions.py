"""Where a chunk is in its document, said the way a reader looks for it: the page of a PDF, the
heading of a Markdown section, or else the characters it spans.

Pages come from ``ExtractedText.page_starts`` (kept on ``Document.page_starts``), headings from
the extracted text when the chunks are stored (kept on ``Chunk.heading``): both are read from the
text once, so a search result needs no more than its chunk row to say where it is.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import replace

from apps.knowledge.chunking import TextChunk

#: ``Chunk.heading``'s length.
MAX_HEADING = 255
# ATX headings ("## Installation"), their closing hashes dropped. Setext headings (a line of
# "===" under the text) are rare in practice and ambiguous with tables and rules.
_MARKDOWN_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """(offset, title) of each ATX heading of ``text``, in order."""
    return [(match.start(), match.group(1).strip()[:MAX_HEADING]) for match in _MARKDOWN_HEADING.finditer(text)]


def headings_of(text: str, mime_type: str) -> list[tuple[int, str]]:
    """The headings a chunk of a document of ``mime_type`` can be placed under (Markdown only:
    the other formats' headings are gone from the extracted text, or are pages)."""
    return markdown_headings(text) if mime_type == "text/markdown" else []


def heading_at(headings: Sequence[tuple[int, str]], offset: int) -> str:
    """The title of the last heading starting at or before ``offset`` ("" if none)."""
    at = bisect_right(headings, offset, key=lambda heading: heading[0])
    return headings[at - 1][1] if at else ""


def with_headings(pieces: Sequence[TextChunk], text: str, mime_type: str) -> list[TextChunk]:
    """``pieces`` with the heading each one starts under."""
    headings = headings_of(text, mime_type)
    if not headings:
        return list(pieces)
    return [replace(piece, heading=heading_at(headings, piece.start_char)) for piece in pieces]


def page_at(page_starts: Sequence[int] | None, offset: int) -> int | None:
    """The page (from 1) holding character ``offset``, or None without page offsets."""
    if not page_starts:
        return None
    return max(bisect_right(page_starts, offset), 1)


def describe(*, start_char: int, end_char: int, page_starts: Sequence[int] | None = None, heading: str = "") -> str:
    """ "page 3", "pages 3–4", the heading, or "characters 1,200–2,450": where to look."""
    first = page_at(page_starts, start_char)
    if first is not None:
        last = page_at(page_starts, max(end_char - 1, start_char)) or first
        return f"page {first}" if last == first else f"pages {first}–{last}"
    if heading:
        return heading
    return f"characters {start_char:,}–{end_char:,}"
