"""``ModelsCache``: the current prices, read from the database once per TTL, and name resolution.

Providers do not name a model the way our price rows do. OpenRouter answers with the canonical
slug (``anthropic/claude-4.5-sonnet-20250929`` for a request to ``anthropic/claude-sonnet-4.5``),
OpenAI with a dated snapshot (``gpt-4o-mini-2024-07-18``), and callers write ``gpt-4o-mini``
or ``openai/gpt-4o-mini`` for either provider. ``get`` maps all of these to a price row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest

from django.db import DatabaseError, connection

from apps.llm.pricing.sheets import ModelPricing, undated_model_name
from apps.llm.transport.providers import free_providers

logger = logging.getLogger(__name__)

#: After a failed read of the prices, the next attempt waits this long.
DATABASE_RETRY_SECONDS = 60.0
#: Names whose resolution an index remembers (a snapshot lives one TTL, so this rarely fills).
RESOLVED_NAMES = 4096
#: Models running in this process (``local/...``) cost nothing, whatever the provider.
FREE_MODEL_PREFIX = "local/"


@dataclass
class PriceIndex:
    """A set of price sheets (those in force at one time), looked up by id and by canonical slug."""

    by_id: dict[tuple[str, str], ModelPricing] = field(default_factory=dict)
    by_slug: dict[tuple[str, str], ModelPricing] = field(default_factory=dict)
    #: What ``resolve`` found per (model, provider): every call asks, for a handful of names.
    _resolved: dict[tuple[str, str | None], ModelPricing | None] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, pricings: list[ModelPricing]) -> PriceIndex:
        index = cls()
        for pricing in pricings:
            index.by_id[(pricing.provider, pricing.model_id)] = pricing
        # Variants share their base model's slug (":free", ":batch", ":thinking"...) and a
        # response names the base model by it: prefer the plain id, and never a free variant
        # over a paid one, so that a slug never resolves to a cheaper price than was charged.
        for pricing in sorted(pricings, key=_variant_rank, reverse=True):
            if pricing.canonical_slug:
                index.by_slug[(pricing.provider, pricing.canonical_slug)] = pricing
        return index

    def find(self, provider: str, model: str) -> ModelPricing | None:
        return self.by_id.get((provider, model)) or self.by_slug.get((provider, model))

    def resolve(self, model: str, provider: str | None = None) -> ModelPricing | None:
        """The price sheet for ``model`` (as a request or a response names it), or ``None``."""
        if provider in free_providers() or model.startswith(FREE_MODEL_PREFIX):
            return ModelPricing.free(model, provider or "local", source="local models cost nothing")
        key = (model, provider)
        if key in self._resolved:
            return self._resolved[key]
        found = next(
            (p for p in (self.find(*candidate) for candidate in _candidates(model, provider)) if p is not None), None
        )
        if len(self._resolved) < RESOLVED_NAMES:  # model names come from callers: bounded
            self._resolved[key] = found
        return found


def _variant_rank(pricing: ModelPricing) -> tuple[bool, bool, str]:
    model_id = pricing.model_id
    return (":" in model_id, model_id.endswith(":free"), model_id)


def _current_pricings() -> list[ModelPricing]:
    # Imported here: this module is importable before Django's app registry is ready.
    from apps.llm.models import ModelPrice

    return [row.to_pricing() for row in ModelPrice.objects.current()]


class ModelsCache:
    """The current prices, in process memory, reread from the database every ``ttl_seconds``.

    Thread-safe: lookups read an immutable snapshot; one thread at a time refreshes it.
    ``clock`` is the time source (monotonic seconds); tests may pass their own.
    """

    def __init__(self, ttl_seconds: float = 86400, *, clock: Callable[[], float] = time.monotonic):
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # (index, monotonic time it was read), replaced as a whole so readers need no lock.
        self._snapshot: tuple[PriceIndex, float] | None = None

    def get(self, model: str, provider: str | None = None) -> ModelPricing | None:
        """The price sheet for ``model`` (as a request or a response names it), or ``None``."""
        if provider in free_providers() or model.startswith(FREE_MODEL_PREFIX):
            # Without reading the table: local models are priced even with no database.
            return ModelPricing.free(model, provider or "local", source="local models cost nothing")
        return self._current_index().resolve(model, provider)

    def invalidate(self) -> None:
        """Forget the snapshot: the next lookup reads the database (e.g. after a pricing sync)."""
        with self._lock:
            self._snapshot = None

    def all(self) -> list[ModelPricing]:
        return list(self._current_index().by_id.values())

    def __len__(self) -> int:
        return len(self._current_index().by_id)

    def _current_index(self) -> PriceIndex:
        snapshot = self._snapshot
        if snapshot is not None and not self._expired(snapshot):
            return snapshot[0]
        with self._lock:
            # Another thread may have refreshed while this one waited for the lock.
            snapshot = self._snapshot
            if snapshot is None or self._expired(snapshot):
                try:
                    index = PriceIndex.build(_current_pricings())
                except DatabaseError as exc:
                    # Prices barely change: the last ones read beat failing the call. Tried again
                    # in a minute; with none read yet, calls are unpriced (None) meanwhile.
                    logger.warning("Prices cannot be read (%s): using the last ones read", type(exc).__name__)
                    connection.close_if_unusable_or_obsolete()
                    index = snapshot[0] if snapshot is not None else PriceIndex.build([])
                    retry_at = self._clock() + min(self.ttl_seconds, DATABASE_RETRY_SECONDS)
                    self._snapshot = (index, retry_at - self.ttl_seconds)
                    return index
                snapshot = self._snapshot = (index, self._clock())
                logger.debug("Loaded %d model prices", len(index.by_id))
            return snapshot[0]

    def _expired(self, snapshot: tuple[PriceIndex, float]) -> bool:
        return self._clock() - snapshot[1] >= self.ttl_seconds


def _candidates(model: str, provider: str | None) -> Iterator[tuple[str, str]]:
    """The (provider, name) pairs that may hold the price of ``model``, best first.

    The provider's own rows come before another provider's, and for each place a dated
    snapshot name (``gpt-4o-mini-2024-07-18``) is tried as such, then as its base model.
    """
    names = [name for name in (model, undated_model_name(model)) if name]
    for places in (_own_candidates, _fallback_candidates):
        for pairs in zip_longest(*(places(name, provider) for name in names)):
            yield from (pair for pair in pairs if pair is not None)


def _own_candidates(model: str, provider: str | None) -> Iterator[tuple[str, str]]:
    if provider is None:
        if "/" in model:
            yield "openrouter", model
            prefix, _, bare = model.partition("/")
            yield prefix, bare  # "openai/gpt-4o-mini": also OpenAI's own price
        else:
            yield "openai", model
            yield "openrouter", f"openai/{model}"
        return
    yield provider, model
    if model.startswith(f"{provider}/"):
        yield provider, model.removeprefix(f"{provider}/")
    if provider == "openrouter" and "/" not in model:
        # OpenRouter serves bare OpenAI names ("gpt-4o-mini") as "openai/gpt-4o-mini".
        yield "openrouter", f"openai/{model}"


def _fallback_candidates(model: str, provider: str | None) -> Iterator[tuple[str, str]]:
    if provider == "openai":
        # A model missing from our OpenAI table: OpenRouter lists OpenAI's models at OpenAI's
        # own prices (it passes them through), which beats having no price at all.
        yield "openrouter", model if model.startswith("openai/") else f"openai/{model}"
