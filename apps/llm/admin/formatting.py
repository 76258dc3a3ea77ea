"""HTML and money formatting shared by the LLM admin pages and the dashboard (money: ``apps.llm.money``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from unfold.widgets import UnfoldAdminTextInputWidget

from apps.llm.money import MAX_DIGITS, parse_usd, significant_digits, usd, usd_precise
from apps.llm.pricing.sheets import plain_decimal

__all__ = ["UsdField", "UsdInput", "badge", "format_prompt", "format_text", "money", "money_column", "usd_precise"]


def money(value: Decimal | int | None, *, signed: bool = False) -> str:
    """An amount as every LLM admin page shows it (``apps.llm.money.usd``): ``$0.0194``, never 24 digits."""
    return usd(value, signed=signed)


def money_column(field: str, description: str = "", *, ordering: str | None = None) -> Callable[[Any, Any], str]:
    """An admin display method showing the money column ``field`` through ``money``.

    A DecimalField shown as it is (a read-only field, a list column) would read
    ``0.019392000000000000000000``; ``cost_money = money_column("cost")`` reads ``$0.0194``.
    """

    def show(model_admin: Any, obj: Any) -> str:
        return money(getattr(obj, field))

    show.__name__ = f"{field}_money"
    return admin.display(description=description or field.replace("_", " "), ordering=ordering)(show)


class UsdInput(UnfoldAdminTextInputWidget):
    """A dollar amount in a form: the exact value without the column's 24 decimals (``0.019392``)."""

    input_type = "text"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"inputmode": "decimal", "prefix_icon": "attach_money", **(attrs or {})})

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, Decimal):
            return plain_decimal(value)
        return super().format_value(value)


class UsdField(forms.DecimalField):
    """Dollars typed by a person: ``1234.5``, ``$1,234.50``; at most ``MAX_DIGITS`` significant digits, not negative.

    The model column stays a ``Decimal`` of 24 places; the form shows and takes what people write.
    """

    widget = UsdInput
    default_error_messages = {
        "invalid": "Enter an amount of dollars, such as 25, 0.50 or $1,200.",
        "digits": f"Use at most {MAX_DIGITS} significant digits (such as 1234.5678 or 0.00012345).",
        "negative": "Enter an amount of zero or more.",
    }

    def to_python(self, value: Any) -> Decimal | None:  # type: ignore[override]  # as django-stubs' DecimalField
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = parse_usd(value)
            except ValueError as error:
                raise ValidationError(self.error_messages["invalid"], code="invalid") from error
        return super().to_python(value)

    def validate(self, value: Decimal | None) -> None:  # None: an empty optional field
        if value is None:
            if self.required:
                raise ValidationError(self.error_messages["required"], code="required")
            return
        super().validate(value)
        if value < 0:
            raise ValidationError(self.error_messages["negative"], code="negative")
        if significant_digits(value) > MAX_DIGITS:
            raise ValidationError(self.error_messages["digits"], code="digits")

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        # Not DecimalField's step/min for a number input: this is a text input taking "$" and ",".
        return forms.Field.widget_attrs(self, widget)


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
