"""HTML and money formatting shared by the LLM admin pages and the dashboard."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.utils.html import format_html, format_html_join


def money(value: Decimal | None) -> str:
    """USD with enough digits for sub-cent calls, without exponent notation."""
    if value is None:
        return "—"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    if abs(value) >= Decimal("0.01"):
        return f"${value:.4f}"
    # Sub-cent calls: eight decimals are enough to tell them apart (the exact value is on the row).
    return f"${value.quantize(Decimal('1e-8')).normalize():f}" if value else "$0"


def badge(text: str, variant: str = "") -> str:
    colours = {
        "success": ("#dcfce7", "#15803d"),
        "danger": ("#fee2e2", "#b91c1c"),
        "warning": ("#ffedd5", "#c2410c"),
        "": ("#f3f4f6", "#374151"),
    }
    background, colour = colours.get(variant, colours[""])
    return format_html(
        '<span style="background:{};color:{};border-radius:6px;padding:1px 8px;font-size:11px;'
        'font-weight:600;text-transform:uppercase;white-space:nowrap">{}</span>',
        background,
        colour,
        text,
    )


def _message_text(content: Any) -> str:
    """A message's content: a string, or the text of its parts (other parts as JSON)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "")
            if isinstance(p, dict) and p.get("type") == "text"
            else json.dumps(p, ensure_ascii=False, indent=2)
            for p in content
        )
    return json.dumps(content, ensure_ascii=False, indent=2)


#: Inline styles: the change form loads no stylesheet of ours.
TEXT_STYLE = (
    "white-space:pre-wrap;word-break:break-word;max-height:32rem;overflow:auto;margin:0;"
    "font-family:ui-monospace,monospace;font-size:12px"
)
ROLE_STYLE = "font-weight:600;text-transform:uppercase;font-size:11px;opacity:.7;margin:8px 0 2px"


def format_text(text: str) -> str:
    return format_html('<pre class="llm-text" style="{}">{}</pre>', TEXT_STYLE, text)


def format_prompt(prompt: Any) -> str:
    """Chat messages as role + text blocks; anything else (embedding inputs) as indented JSON."""
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return format_html_join(
            "",
            '<div class="llm-message"><div class="llm-role" style="{}">{}</div>{}</div>',
            ((ROLE_STYLE, m["role"], format_text(_message_text(m.get("content")))) for m in prompt),
        )
    if isinstance(prompt, str):
        return format_text(prompt)
    return format_text(json.dumps(prompt, ensure_ascii=False, indent=2))
