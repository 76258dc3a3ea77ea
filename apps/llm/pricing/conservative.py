"""A conservative price for a model without one, so that a hard budget limit still holds for it.

The price of the most expensive model of the same family (the longest shared name prefix,
``openai/gpt-4o-2099-01-01`` -> ``openai/gpt-4o``), else of the provider's most expensive
model. Expensive by prompt plus completion price per token: an over-estimate stops a call a
little early, an under-estimate would let the budget be crossed.
"""

from __future__ import annotations

import re

from apps.llm.pricing.lookup import ModelsCache
from apps.llm.pricing.sheets import ModelPricing

_NAME_PARTS = re.compile(r"[-.:_]")


def conservative_pricing(prices: ModelsCache, model: str, provider: str | None) -> ModelPricing | None:
    """A price sheet to charge ``model`` with (``price_id`` None: it is no model's own), or None if the
    provider has no prices at all."""
    known = [p for p in prices.all() if provider is None or p.provider == provider]
    if not known:
        return None
    for family in _families(model):
        members = [p for p in known if p.model_id.startswith(family)]
        if members:
            break
    else:
        members = known
    priciest = max(members, key=lambda p: (p.prompt + p.completion, p.model_id))
    return priciest.model_copy(
        update={
            "model_id": model,
            "price_id": None,
            "source": f"estimate: the price of {priciest.provider}:{priciest.model_id} (no price for {model})",
        }
    )


def _families(model: str) -> list[str]:
    """Ever shorter prefixes of ``model`` at name boundaries, down to the vendor and first name part."""
    vendor, _, name = model.rpartition("/")
    cuts = [m.start() for m in _NAME_PARTS.finditer(name)]
    prefix = f"{vendor}/" if vendor else ""
    return [prefix + name[:cut] for cut in reversed(cuts)]
