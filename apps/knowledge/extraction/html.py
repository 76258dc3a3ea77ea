"""HTML -> the text a browser shows (and the document's ``<title>``), decoded as a browser would."""

from __future__ import annotations

import re

from apps.knowledge.extraction.text import _PREFERRED_LEGACY, _decode

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9._:-]+)""",
    re.IGNORECASE,
)
# WHATWG encoding standard: these labels mean windows-1252 in HTML.
_HTML_LATIN1_LABELS = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii"})
# Never shown by a browser (or not part of the page's content: navigation menus are repeated on
# every page of a site and would make every document match every menu word).
_SKIPPED_TAGS = frozenset(
    {"head", "script", "style", "noscript", "template", "nav", "svg", "canvas", "iframe", "object", "embed", "select"}
)
_PARAGRAPH, _LINE, _CELL = 3, 2, 1
_BLOCK_TAGS: dict[str, int] = {
    **dict.fromkeys(
        [
            "address",
            "article",
            "aside",
            "blockquote",
            "body",
            "caption",
            "center",
            "details",
            "dialog",
            "div",
            "dl",
            "fieldset",
            "figcaption",
            "figure",
            "footer",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "header",
            "hgroup",
            "hr",
            "html",
            "legend",
            "main",
            "menu",
            "ol",
            "p",
            "pre",
            "section",
            "summary",
            "table",
            "ul",
        ],
        _PARAGRAPH,
    ),
    **dict.fromkeys(["li", "dt", "dd", "tr"], _LINE),
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


def _visible_text(soup) -> str:
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


def _is_hidden(tag) -> bool:
    attrs = tag.attrs
    if not attrs:
        return False
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style) and _HIDDEN_STYLE.search(str(style)) is not None
