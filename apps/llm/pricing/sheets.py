"""What a model costs: ``ModelPricing`` and the parsers that build it from price catalogs.

Prices are per token (or per unit: request, image, web search) in USD, as ``Decimal`` parsed
from the catalog's strings, never through ``float``. This module is pure (no database) so the
pricing sync and the data migration can share it.

OpenRouter's ``/api/v1/models`` has changed shape over time and ``parse_openrouter_catalog``
reads all the shapes we have seen:

- 2025 format: every price key is present, unpriced ones as ``"0"``.
- 2026-01 format: keys of unpriced components are omitted; a missing key means 0.
- 2026-08 format: ``pricing.overrides`` holds price tiers (``min_prompt_tokens``: long-context
  prices; ``utc_start``/``utc_end``: time-of-day prices), and new keys appear
  (``input_cache_write_1h``, ``input_audio_cache``, ``image_output``, ``audio_output``...).
  Keys without a field of their own are kept in ``extra_prices`` rather than dropped.

The embeddings catalog (``/api/v1/embeddings/models``) has the same entry shape.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NamedTuple

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

logger = logging.getLogger(__name__)

#: The price components with a field of their own, in the catalog's names.
PRICE_COMPONENTS = (
    "prompt",
    "completion",
    "request",
    "image",
    "input_cache_read",
    "input_cache_write",
    "internal_reasoning",
    "web_search",
)

#: Components charged per unit (a request, an image, a search) rather than per token.
PER_UNIT_COMPONENTS = frozenset({"request", "image", "web_search"})

#: Extra catalog keys known to be per-token prices; other extra keys get the per-unit limit.
PER_TOKEN_EXTRAS = frozenset(
    {"audio", "input_audio_cache", "input_cache_write_1h", "image_token", "image_output", "audio_output"}
)

# Sanity limits. The dearest token in the catalogs we have is openai/o1-pro's completion at
# $0.0006; $0.01 per token ($10,000 per million) leaves a wide margin yet catches a price
# sent per million or per thousand tokens by mistake. The dearest per-unit price is an image
# input at $0.21675; $100 per request, image or search is far above any real fee.
MAX_PRICE_PER_TOKEN = Decimal("0.01")
MAX_PRICE_PER_UNIT = Decimal("100")

# The database stores prices as numeric(32, 24). Real catalogs carry up to 23 decimal places
# (float-printed prices such as "8.333333333333334E-8"), so 24 keeps every one exact.
PRICE_MAX_DIGITS = 32
PRICE_DECIMAL_PLACES = 24

#: OpenRouter's price for routers (openrouter/auto...): "depends on the model chosen".
VARIABLE_PRICE_SENTINEL = Decimal(-1)

ZERO = Decimal(0)


def to_decimal(value: Any) -> Decimal:
    """A price from a catalog value: a decimal string, an int or a Decimal; never a float.

    A float has already lost the catalog's digits (0.1 is not 1/10), so it is refused rather
    than silently rounded. Parse JSON with ``parse_float=Decimal`` to keep such numbers exact.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (bool, float)):
        raise ValueError(f"expected a decimal string, got {type(value).__name__} {value!r}")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"expected a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def decimal_text(value: Decimal) -> str:
    """Plain positional notation ("0.00000003", never "3E-8"), as stored in JSON columns."""
    return format(value, "f")


def plain_decimal(value: Decimal) -> str:
    """The shortest exact text of ``value`` for people: "0.00003", "12"; never "3E-5" or "0.0000300"."""
    return format(value.normalize(), "f") if value else "0"


def check_price(value: Decimal, component: str) -> Decimal:
    """``value`` if it is a plausible price for ``component``, else ``ValueError`` saying why."""
    if value == VARIABLE_PRICE_SENTINEL:
        raise ValueError(
            "-1 is the catalog's 'variable price' sentinel (the router's price depends on the model it picks)"
        )
    if value < 0:
        raise ValueError(f"negative price {value}")
    per_token = component in PER_TOKEN_EXTRAS or (
        component in PRICE_COMPONENTS and component not in PER_UNIT_COMPONENTS
    )
    limit = MAX_PRICE_PER_TOKEN if per_token else MAX_PRICE_PER_UNIT
    if value > limit:
        unit = "token" if per_token else "unit"
        raise ValueError(f"{value} per {unit} is above the sanity limit of {limit}")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > PRICE_DECIMAL_PLACES:
        raise ValueError(f"{value} has more than {PRICE_DECIMAL_PLACES} decimal places")
    return value


Price = Annotated[
    Decimal,
    BeforeValidator(to_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
]


class _Prices(BaseModel):
    """Validation shared by a full price sheet and a tier's partial one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator(*PRICE_COMPONENTS, check_fields=False)
    @classmethod
    def _check_component(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        return value if value is None else check_price(value, info.field_name or "")

    @field_validator("extra_prices", check_fields=False)
    @classmethod
    def _check_extras(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for key, price in value.items():
            try:
                check_price(price, key)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value


class PriceTier(_Prices):
    """Prices that replace the base ones under a condition (a catalog ``pricing.overrides`` item).

    Components left ``None`` keep the base price. ``min_prompt_tokens`` tiers apply from that
    many prompt tokens upwards (inclusive, as the name says). ``utc_start``/``utc_end`` tiers
    are time-of-day prices; they are kept but not applied, because the catalog does not say
    whether ``1000`` means 10:00 or minute 1000 of the day.
    """

    min_prompt_tokens: int | None = Field(default=None, ge=0)
    utc_start: int | None = None
    utc_end: int | None = None
    prompt: Price | None = None
    completion: Price | None = None
    request: Price | None = None
    image: Price | None = None
    input_cache_read: Price | None = None
    input_cache_write: Price | None = None
    internal_reasoning: Price | None = None
    web_search: Price | None = None
    #: Prices of components without a field of their own (``input_cache_write_1h``, ``audio``...).
    extra_prices: dict[str, Price] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_condition(self) -> PriceTier:
        if self.min_prompt_tokens is None and (self.utc_start is None or self.utc_end is None):
            raise ValueError("a tier needs min_prompt_tokens or utc_start and utc_end")
        return self

    @classmethod
    def from_catalog(cls, item: dict[str, Any]) -> PriceTier:
        """A tier from an ``overrides`` item; keys other than conditions and components are extras."""
        if not isinstance(item, dict):
            raise ValueError(f"a tier must be an object, got {type(item).__name__}")
        known = set(PRICE_COMPONENTS) | {"min_prompt_tokens", "utc_start", "utc_end"}
        fields = {k: v for k, v in item.items() if k in known}
        extras = {k: v for k, v in item.items() if k not in known}
        return cls(**fields, extra_prices=extras)

    def to_catalog(self) -> dict[str, Any]:
        """The inverse of ``from_catalog``: a JSON-ready dict of strings (and int conditions)."""
        data = self.model_dump(mode="json", exclude_none=True, exclude={"extra_prices"})
        return data | self.model_dump(mode="json")["extra_prices"]


class ModelPricing(_Prices):
    """The price sheet of one model at one provider. A component missing from the catalog is 0."""

    provider: str = Field(min_length=1)
    model_id: str = Field(min_length=1)
    canonical_slug: str | None = None
    name: str = ""
    prompt: Price = ZERO
    completion: Price = ZERO
    request: Price = ZERO
    image: Price = ZERO
    input_cache_read: Price = ZERO
    input_cache_write: Price = ZERO
    internal_reasoning: Price = ZERO
    web_search: Price = ZERO
    #: Prices of components without a field of their own (``input_cache_write_1h``, ``audio``...).
    extra_prices: dict[str, Price] = Field(default_factory=dict)
    context_length: int | None = Field(default=None, ge=0)
    #: OpenRouter's summary such as "text+image->text".
    modality: str | None = None
    input_modalities: list[str] = Field(default_factory=list)
    output_modalities: list[str] = Field(default_factory=list)
    tiers: list[PriceTier] = Field(default_factory=list)
    source: str = ""
    fetched_at: AwareDatetime | None = None
    #: The ``ModelPrice`` row this sheet was read from (None for a parsed catalog entry).
    price_id: int | None = None

    @classmethod
    def free(cls, model_id: str, provider: str, *, source: str = "free") -> ModelPricing:
        """A price sheet where everything costs 0 (local models, the simulator)."""
        return cls(provider=provider, model_id=model_id, name=model_id, source=source)

    def for_prompt_tokens(self, prompt_tokens: int) -> ModelPricing:
        """The flat price sheet for a request of ``prompt_tokens``: its highest tier applied.

        Without an applicable tier this is ``self``. Otherwise the tier's prices replace the
        base ones and the result has no tiers left (it is the sheet for that size only).
        """
        applicable = [t for t in self.tiers if t.min_prompt_tokens is not None and prompt_tokens >= t.min_prompt_tokens]
        if not applicable:
            return self
        tier = max(applicable, key=lambda t: t.min_prompt_tokens or 0)
        update: dict[str, Any] = {c: getattr(tier, c) for c in PRICE_COMPONENTS if getattr(tier, c) is not None}
        # Catalogs list internal_reasoning equal to completion for models that bill reasoning as
        # output, and a tier restates only the keys it changes (gemini-2.5-pro's >200K tier sets
        # completion, not internal_reasoning): reasoning then follows the tier's output price.
        restates_output_only = tier.completion is not None and tier.internal_reasoning is None
        if restates_output_only and self.internal_reasoning == self.completion:
            update["internal_reasoning"] = tier.completion
        update["extra_prices"] = self.extra_prices | tier.extra_prices
        update["tiers"] = []
        return self.model_copy(update=update)

    def prices(self) -> dict[str, Decimal]:
        """Every non-zero price: the named components and the extras."""
        named = {c: getattr(self, c) for c in PRICE_COMPONENTS}
        return {k: v for k, v in (named | self.extra_prices).items() if v}


class Rejection(NamedTuple):
    model_id: str
    reason: str


class CatalogParseResult(BaseModel):
    """What a catalog gave: the prices we trust, and each entry refused with its reason."""

    accepted: list[ModelPricing] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)


class _Architecture(BaseModel):
    model_config = ConfigDict(extra="ignore")

    modality: str | None = None
    input_modalities: list[str] = Field(default_factory=list)
    output_modalities: list[str] = Field(default_factory=list)


class _CatalogEntry(BaseModel):
    """The fields of a catalog entry we use; the rest (descriptions, benchmarks...) is ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    canonical_slug: str | None = None
    name: str | None = None
    context_length: int | None = None
    architecture: _Architecture | None = None
    pricing: dict[str, Any]


def parse_openrouter_catalog(
    payload: dict[str, Any], *, source: str, fetched_at: datetime | None
) -> CatalogParseResult:
    """Price sheets (provider ``"openrouter"``) from a ``/models`` or ``/embeddings/models`` body.

    Each entry is validated on its own: a bad one is rejected with its reason and the rest
    are kept. A payload without a ``data`` list is not a catalog and raises ``ValueError``.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise ValueError("not an OpenRouter catalog: expected an object with a 'data' list")
    if fetched_at is not None and fetched_at.utcoffset() is None:
        raise ValueError("fetched_at must be timezone-aware")
    result = CatalogParseResult()
    seen: set[str] = set()
    for index, raw in enumerate(payload["data"]):
        model_id = raw.get("id") if isinstance(raw, dict) else None
        label = model_id if isinstance(model_id, str) and model_id else f"<entry {index}>"
        if label in seen:
            result.rejected.append(Rejection(label, "duplicate id in the catalog"))
            continue
        try:
            pricing = _pricing_from_entry(raw, source=source, fetched_at=fetched_at)
        except (ValidationError, ValueError) as exc:
            result.rejected.append(Rejection(label, _reason(exc)))
            continue
        seen.add(label)
        result.accepted.append(pricing)
    if result.rejected:
        logger.debug("%s: %d models rejected: %s", source, len(result.rejected), result.rejected)
    return result


def _pricing_from_entry(raw: Any, *, source: str, fetched_at: datetime | None) -> ModelPricing:
    entry = _CatalogEntry.model_validate(raw)
    components = {k: v for k, v in entry.pricing.items() if k in PRICE_COMPONENTS}
    extras = {k: v for k, v in entry.pricing.items() if k not in PRICE_COMPONENTS and k != "overrides"}
    overrides = entry.pricing.get("overrides") or []
    if not isinstance(overrides, list):
        raise ValueError("pricing.overrides: expected a list")
    tiers = []
    for position, item in enumerate(overrides):
        try:
            tiers.append(PriceTier.from_catalog(item))
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"pricing.overrides[{position}]: {_reason(exc)}") from None
    architecture = entry.architecture or _Architecture()
    return ModelPricing(
        provider="openrouter",
        model_id=entry.id,
        canonical_slug=entry.canonical_slug or None,
        name=entry.name or "",
        context_length=entry.context_length,
        modality=architecture.modality,
        input_modalities=architecture.input_modalities,
        output_modalities=architecture.output_modalities,
        **components,
        extra_prices=extras,
        tiers=tiers,
        source=source,
        fetched_at=fetched_at,
    )


def _reason(exc: Exception) -> str:
    """One line per problem, naming the field: "prompt: -1 is the catalog's ..."."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


# -- the maintained table of direct-OpenAI prices ----------------------------------------------

_DATED_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


def undated_model_name(model: str) -> str | None:
    """``gpt-4o-mini`` for ``gpt-4o-mini-2024-07-18``; ``None`` when there is no date suffix."""
    match = _DATED_SNAPSHOT.match(model)
    return match["base"] if match else None


def parse_price_table(
    payload: dict[str, Any], *, provider: str, source: str, fetched_at: datetime | None
) -> CatalogParseResult:
    """Price sheets from our own table format (``data/openai-prices.json``).

    ``{"models": {"gpt-4o": {"prompt": "0.0000025", "completion": "0.00001", ...,
    "context_length": 128000, "tiers": [{"min_prompt_tokens": ..., ...}]}}}``: the catalog's
    component names, prices as decimal strings.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), dict):
        raise ValueError("not a price table: expected an object with a 'models' object")
    result = CatalogParseResult()
    for model_id, row in payload["models"].items():
        try:
            if not isinstance(row, dict):
                raise ValueError("expected an object")
            fields = dict(row)
            tiers = [PriceTier.from_catalog(t) for t in fields.pop("tiers", [])]
            result.accepted.append(
                ModelPricing(
                    provider=provider,
                    model_id=model_id,
                    name=fields.pop("name", model_id),
                    tiers=tiers,
                    source=source,
                    fetched_at=fetched_at,
                    **fields,
                )
            )
        except (ValidationError, ValueError) as exc:
            result.rejected.append(Rejection(model_id, _reason(exc)))
    return result
