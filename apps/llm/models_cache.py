"""Kept for imports written against earlier releases: the price lookup is ``apps.llm.pricing.lookup``."""

from apps.llm.pricing.lookup import FREE_MODEL_PREFIX, ModelsCache

__all__ = ["FREE_MODEL_PREFIX", "ModelsCache"]
