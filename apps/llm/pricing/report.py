"""Step 4 of the pricing sync: the ``SyncReport`` of what it did, and its text for logs and the admin."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from apps.llm.pricing.catalogs import CatalogInfo, ParsedCatalogs
from apps.llm.pricing.sheets import (
    PER_TOKEN_EXTRAS,
    PER_UNIT_COMPONENTS,
    PRICE_COMPONENTS,
    Price,
    PriceTier,
    plain_decimal,
)
from apps.llm.pricing.store import SyncResult

MILLION = Decimal(1_000_000)


class PriceChange(BaseModel):
    """A repriced model: ``components`` maps each changed price to (old, new); 0 means absent."""

    model_id: str
    components: dict[str, tuple[Price, Price]] = Field(default_factory=dict)
    #: (old, new) tiers in catalog form, when the conditional prices changed.
    tiers: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None
    #: Something apply_prices saw as a change that the components do not show (zero-valued extras).
    other: str = ""


class AddedModel(BaseModel):
    model_id: str
    prices: dict[str, Price] = Field(default_factory=dict)
    tiers: int = 0


class RejectedEntry(BaseModel):
    model_id: str
    reason: str


class SyncReport(BaseModel):
    """What a sync did (or, for a dry run, would do), for logs, the admin and tests."""

    provider: str
    synced_at: AwareDatetime
    dry_run: bool = False
    catalogs: list[CatalogInfo] = Field(default_factory=list)
    added: list[AddedModel] = Field(default_factory=list)
    changed: list[PriceChange] = Field(default_factory=list)
    deactivated: list[str] = Field(default_factory=list)
    reactivated: list[str] = Field(default_factory=list)
    unchanged: int = 0
    rejected: list[RejectedEntry] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "deactivated": len(self.deactivated),
            "reactivated": len(self.reactivated),
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
        }

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.deactivated or self.reactivated)

    def source(self) -> str:
        return ", ".join(info.location for info in self.catalogs)

    def format(self, *, limit: int | None = None) -> str:
        """The report as plain text: a header, the counts, then one line per model.

        ``limit`` caps the lines of each section (the rest is counted, not listed).
        """
        when = self.synced_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        title = f"Pricing sync of {self.provider} at {when}"
        lines = [title + (" (dry run: nothing was written)" if self.dry_run else "")]
        for info in self.catalogs:
            extra = f", {info.duplicates} already listed" if info.duplicates else ""
            lines.append(
                f"  {info.kind} catalog {info.location}: {info.entries} entries, {info.accepted} accepted, "
                f"{info.rejected} rejected{extra}"
            )
            if info.note:
                lines.append(f"    ({info.note})")
        counts = self.counts()
        lines.append(", ".join(f"{value} {name}" for name, value in counts.items()))
        if self.has_changes:
            lines.append("Prices: USD per million tokens (/M); request, image and web_search: USD each.")
        else:
            lines.append("Prices are up to date.")

        def section(name: str, items: list[str], note: str = "") -> None:
            if not items:
                return
            lines.append("")
            lines.append(f"{name} ({len(items)})" + (f", {note}:" if note else ":"))
            shown = items if limit is None else items[:limit]
            lines.extend(f"  {item}" for item in shown)
            if len(shown) < len(items):
                lines.append(f"  ... and {len(items) - len(shown)} more")

        section("Added", [f"+ {a.model_id}  {_prices_text(a.prices, a.tiers)}" for a in self.added])
        section("Changed", [f"~ {c.model_id}  {_change_text(c)}" for c in self.changed], "old -> new")
        section("Deactivated", [f"- {m}" for m in self.deactivated], "no longer listed: kept, marked inactive")
        section("Reactivated", [f"^ {m}" for m in self.reactivated], "listed again")
        section(
            "Rejected",
            [f"! {r.model_id}: {r.reason}" for r in self.rejected],
            "invalid prices, not applied (a stored price is kept)",
        )
        return "\n".join(lines)


def build_report(parsed: ParsedCatalogs, result: SyncResult, *, now: datetime, dry_run: bool) -> SyncReport:
    """The report of ``result``, models in id order so two reports of a catalog read the same."""
    by_id = {p.model_id: p for p in parsed.accepted}
    changed = []
    for model_id, diff in sorted(result.changed.items()):
        tiers = diff.get("tiers")
        other = diff.get("extra_prices")
        components = {k: v for k, v in diff.items() if k not in ("tiers", "extra_prices")}
        changed.append(
            PriceChange(
                model_id=model_id,
                components=components,
                tiers=tiers,
                other=f"extra_prices {other[0]} -> {other[1]}" if other else "",
            )
        )
    return SyncReport(
        provider=parsed.provider,
        synced_at=now,
        dry_run=dry_run,
        catalogs=parsed.catalogs,
        added=[
            AddedModel(model_id=m, prices=by_id[m].prices(), tiers=len(by_id[m].tiers)) for m in sorted(result.added)
        ],
        changed=changed,
        deactivated=sorted(result.deactivated),
        reactivated=sorted(result.reactivated),
        unchanged=len(result.unchanged),
        rejected=[RejectedEntry(model_id=m, reason=reason) for m, reason in parsed.rejected],
    )


# -- formatting --------------------------------------------------------------------------------


def _per_token(component: str) -> bool:
    return component in PER_TOKEN_EXTRAS or (component in PRICE_COMPONENTS and component not in PER_UNIT_COMPONENTS)


def price_text(component: str, value: Decimal) -> str:
    """``0.0000003`` prompt -> ``$0.3/M``; per-unit prices as they are: ``$0.01``."""
    if _per_token(component):
        return f"${plain_decimal(value * MILLION)}/M"
    return f"${plain_decimal(value)}"


def _prices_text(prices: dict[str, Decimal], tiers: int = 0) -> str:
    text = ", ".join(f"{k} {price_text(k, v)}" for k, v in prices.items()) or "free"
    return text + (f" (+{tiers} tier{'s' if tiers != 1 else ''})" if tiers else "")


def _change_text(change: PriceChange) -> str:
    parts = [f"{k} {price_text(k, old)} -> {price_text(k, new)}" for k, (old, new) in change.components.items()]
    if change.tiers is not None:
        old, new = change.tiers
        parts.append(f"tiers [{_tiers_text(old)}] -> [{_tiers_text(new)}]")
    if change.other:
        parts.append(change.other)
    return "; ".join(parts)


def _tiers_text(tiers: list[dict[str, Any]]) -> str:
    texts = []
    for item in tiers:
        tier = PriceTier.from_catalog(item)
        if tier.min_prompt_tokens is not None:
            when = f">= {tier.min_prompt_tokens} prompt tokens"
        else:
            when = f"utc {tier.utc_start}-{tier.utc_end}"
        prices = {c: getattr(tier, c) for c in PRICE_COMPONENTS if getattr(tier, c) is not None}
        texts.append(f"{when}: {_prices_text(prices | tier.extra_prices)}")
    return " | ".join(texts) or "none"
