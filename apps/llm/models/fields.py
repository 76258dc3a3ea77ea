"""Column types the LLM models share."""

from __future__ import annotations

from django.db import models

from apps.llm.pricing.sheets import (
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
)


def price_field(help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, default=0, help_text=help_text
    )


def money_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, **kwargs)
