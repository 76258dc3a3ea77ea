"""The real OpenRouter catalog snapshots of tests/fixtures/pricing (see its SOURCES.md), parsed."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

from apps.llm.pricing.sheets import ModelPricing, parse_openrouter_catalog
from tests.helpers import CATALOGS

DEC_2025 = "openrouter-models-2025-12-18.json"
JAN_2026 = "openrouter-models-2026-01-29.json"
AUG_2026 = "openrouter-models-2026-08-18.json"
EMBEDDINGS = "openrouter-embeddings-models-2025-12-14.json"
FETCHED = datetime(2026, 8, 18, 20, 1, 54, tzinfo=UTC)


@functools.cache
def raw_catalog(name: str) -> dict:
    return json.loads((CATALOGS / name).read_text())


def parse(name: str):
    return parse_openrouter_catalog(raw_catalog(name), source=name, fetched_at=FETCHED)


@functools.cache
def parsed(name: str) -> dict[str, ModelPricing]:
    return {p.model_id: p for p in parse(name).accepted}
