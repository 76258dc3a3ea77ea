"""``ModelsCache`` (apps/llm/pricing/lookup.py): which price row a model name resolves to."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.llm.models import ModelPrice
from apps.llm.pricing.lookup import ModelsCache
from apps.llm.transport.providers import ProviderSpec, register_provider, unregister_provider


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        # Exact ids.
        ("anthropic/claude-sonnet-4.5", "openrouter", ("openrouter", "anthropic/claude-sonnet-4.5")),
        ("anthropic/claude-sonnet-4.5", None, ("openrouter", "anthropic/claude-sonnet-4.5")),
        ("gpt-4o-mini", "openai", ("openai", "gpt-4o-mini")),
        # OpenRouter answers with canonical slugs; :batch variants share them but are not what ran.
        ("anthropic/claude-4.5-sonnet-20250929", "openrouter", ("openrouter", "anthropic/claude-sonnet-4.5")),
        ("openai/gpt-5-mini-2025-08-07", "openrouter", ("openrouter", "openai/gpt-5-mini")),
        ("openai/gpt-5-mini-2025-08-07", None, ("openrouter", "openai/gpt-5-mini")),
        # Bare OpenAI names.
        ("gpt-4o-mini", None, ("openai", "gpt-4o-mini")),
        ("gpt-4o-mini", "openrouter", ("openrouter", "openai/gpt-4o-mini")),
        # The provider's prefix.
        ("openai/gpt-4o-mini", "openai", ("openai", "gpt-4o-mini")),
        ("openai/gpt-4o-mini", None, ("openrouter", "openai/gpt-4o-mini")),
        # Dated OpenAI snapshots: their own row when they have one, else the base model's.
        ("gpt-4o-mini-2024-07-18", "openai", ("openai", "gpt-4o-mini")),
        ("gpt-4.1-nano-2025-04-14", None, ("openai", "gpt-4.1-nano")),
        ("gpt-4o-2024-05-13", "openai", ("openai", "gpt-4o-2024-05-13")),
        # Not in our OpenAI table: OpenRouter's pass-through price of the same model.
        ("gpt-5.1-codex-max", "openai", ("openrouter", "openai/gpt-5.1-codex-max")),
        # Embeddings.
        ("text-embedding-3-small", "openai", ("openai", "text-embedding-3-small")),
        ("openai/text-embedding-3-small", "openrouter", ("openrouter", "openai/text-embedding-3-small")),
    ],
)
def test_models_cache_resolves(model, provider, expected):
    pricing = ModelsCache().get(model, provider)
    assert pricing is not None and (pricing.provider, pricing.model_id) == expected


@pytest.mark.django_db
def test_models_cache_slug_prefers_paid_base_model():
    # z-ai/glm-5.2 has :batch and :free variants under the same slug.
    assert ModelsCache().get("z-ai/glm-5.2-20260616", "openrouter").model_id == "z-ai/glm-5.2"
    assert ModelsCache().get("z-ai/glm-5.2:free", "openrouter").model_id == "z-ai/glm-5.2:free"


@pytest.fixture
def free_test_provider():
    """A provider registered as free, as a project would register its own in-house server."""
    register_provider(ProviderSpec("simulator", free=True))
    yield
    unregister_provider("simulator")


@pytest.mark.django_db
def test_models_cache_unknown_and_free_models(free_test_provider):
    cache = ModelsCache()
    assert cache.get("no-such/model", "openrouter") is None
    assert cache.get("gpt-99", None) is None
    assert cache.get("llama3", "compatible") is None
    for model, provider in [("local/all-minilm-l6-v2", None), ("anything", "local"), ("gpt-4o", "simulator")]:
        free = cache.get(model, provider)
        assert free is not None and free.prices() == {} and free.model_id == model


@pytest.mark.django_db
def test_models_cache_ttl_and_invalidate():
    now = [0.0]
    cache = ModelsCache(ttl_seconds=60, clock=lambda: now[0])
    count = ModelPrice.objects.current().count()
    assert len(cache) == count == len(cache.all())

    ModelPrice.objects.create(provider="openai", model_id="gpt-new", prompt=Decimal("0.000001"), source="test")
    now[0] = 59.9
    assert cache.get("gpt-new", "openai") is None  # the snapshot is still fresh
    now[0] = 60.0
    assert cache.get("gpt-new", "openai").prompt == Decimal("0.000001")
    assert len(cache) == count + 1

    ModelPrice.objects.filter(model_id="gpt-new").update(is_active=False)
    assert cache.get("gpt-new", "openai") is not None
    cache.invalidate()
    assert cache.get("gpt-new", "openai") is None
