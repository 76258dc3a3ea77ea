"""Marking the query's words in a search result, safely escaped."""

import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_WORD = re.compile(r"\w{3,}", re.UNICODE)


def highlight(text: str, query: str) -> SafeString:
    words = sorted({w.lower() for w in _WORD.findall(query)}, key=len, reverse=True)
    escaped = escape(text)
    if not words:
        return mark_safe(escaped)
    pattern = re.compile("|".join(re.escape(escape(w)) for w in words), re.IGNORECASE)
    return mark_safe(pattern.sub(lambda m: f"<mark>{m.group(0)}</mark>", escaped))
