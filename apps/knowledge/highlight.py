"""Marking the query's words in a passage of a search result, as HTML that is safe to show.

PostgreSQL's ``ts_headline`` picks the passages and marks the words (it matches them as keyword
search does: by their stems). It marks them with two control characters rather than tags: the
extracted text can hold none (extraction removes them), so once the passage is HTML-escaped the
marks are the only things turned into markup, whatever the document says (``<script>`` included).
``ts_headline`` also leaves out whatever looks like an HTML tag; the angle brackets are swapped
for two more control characters on the way in (``headline_source``) and back on the way out, so
a document's ``<b>`` is shown, as text.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import F, Func, Value
from django.db.models.functions import Replace
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

START, STOP = "\x02", "\x03"
_LT, _GT = "\x04", "\x05"
_SPACE = re.compile(r"\s+")
#: ``SearchHeadline``'s options: up to two passages of 12-30 words, joined by an ellipsis.
HEADLINE_OPTIONS: dict[str, Any] = {
    "start_sel": START,
    "stop_sel": STOP,
    "max_words": 30,
    "min_words": 12,
    "max_fragments": 2,
    "fragment_delimiter": " … ",
}
#: Words shown of a chunk in which none of the query's words occur (a vector search hit).
PLAIN_WORDS = 40


def headline_source(field: str) -> Func:
    """The text column as ``ts_headline`` should read it: angle brackets hidden from its parser."""
    return Replace(Replace(F(field), Value("<"), Value(_LT)), Value(">"), Value(_GT))


def marked_html(headline: str) -> SafeString:
    """``ts_headline``'s output (of ``headline_source``, marked with ``START``/``STOP``) as HTML
    with ``<mark>``, on one line."""
    text = _SPACE.sub(" ", headline).strip().replace(_LT, "<").replace(_GT, ">")
    return mark_safe(escape(text).replace(START, "<mark>").replace(STOP, "</mark>"))  # escaped first


def plain_snippet(text: str) -> SafeString:
    """The beginning of ``text``, escaped, for a hit that holds none of the query's words."""
    words = text.split()
    shown = " ".join(words[:PLAIN_WORDS]) + (" …" if len(words) > PLAIN_WORDS else "")
    return escape(shown)
