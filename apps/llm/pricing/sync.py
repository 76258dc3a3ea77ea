"""The model-pricing sync: read a provider's price list, check it, and make it the current prices.

One sync is four steps, each a function here so the management command, the scheduled actor
and the tests share them:

1. **read** the catalogs: OpenRouter's ``GET /models`` and ``GET /embeddings/models`` over HTTP
   (``fetch_openrouter_catalogs``), a saved catalog (``read_catalog_file``), or our maintained
   OpenAI table (``read_price_table``). Any network, HTTP or JSON problem raises a ``SyncError``
   before anything is written.
2. **parse** them with the catalog parser (``parse_catalogs``): every price becomes a ``Decimal``
   per token (or per unit), and entries with invalid prices (negative, the ``-1`` sentinel,
   absurdly high) are rejected with their reason, never applied.
3. **apply** them in one transaction (``apply_catalogs``, through ``pricing_store.sync_prices``):
   a changed price closes the old row and starts a new one at the sync time, so past calls keep
   the price they were charged; models the catalogs no longer list are marked inactive, not
   deleted; a listed model that was inactive is reactivated. ``dry_run`` rolls it all back.
4. **report**: a ``SyncReport`` with what was added, changed (old -> new per component),
   deactivated, reactivated and rejected; ``format()`` renders it for logs and the admin.

``run_sync`` chains the steps; ``record_sync`` also stores the outcome as a ``PricingSyncRun``.
API keys are sent only to the configured OpenRouter URL and never appear in messages or rows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import AwareDatetime, BaseModel, Field

from apps.llm.conf import llm_settings
from apps.llm.pricing.sheets import (
    PER_TOKEN_EXTRAS,
    PER_UNIT_COMPONENTS,
    PRICE_COMPONENTS,
    CatalogParseResult,
    ModelPricing,
    Price,
    PriceTier,
    parse_openrouter_catalog,
    parse_price_table,
)
from apps.llm.pricing.store import DATA_DIR, SyncResult, sync_prices
from apps.llm.transport.providers import OPENAI, OPENROUTER, provider_specs

PROVIDERS = (OPENROUTER, OPENAI)

#: Seconds for each HTTP request (connect, read, write, pool): a hung server fails the sync
#: instead of holding a worker until the actor's time limit.
DEFAULT_TIMEOUT = 30.0
#: The catalogs are about 1 MB; a body 30 times that is not a catalog and is not read further.
MAX_CATALOG_BYTES = 32 * 1024 * 1024
#: The maintained table of direct-OpenAI prices (see data/SOURCES.md).
OPENAI_TABLE = DATA_DIR / "openai-prices.json"

#: A sync that would withdraw more than this share of a provider's current models is refused
#: (unless forced): a truncated or filtered catalog must not switch off cost accounting.
MAX_DEACTIVATED_SHARE = Decimal("0.5")
#: ...but only from this many current models: a nearly empty table may change wholesale.
GUARDED_FROM = 10

MILLION = Decimal(1_000_000)

Progress = Callable[[str], None]

logger = logging.getLogger(__name__)


# -- errors ------------------------------------------------------------------------------------


class SyncError(Exception):
    """A sync that changed nothing; the message is one line naming the source and the problem.

    ``transient`` errors (network, timeout, HTTP 5xx/429) may succeed if retried later.
    """

    transient: bool = False

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class FetchError(SyncError):
    """The catalog could not be read: connection, timeout, HTTP status, size or JSON."""


class SyncRefused(SyncError):
    """The catalog was read but applying it looked wrong (it would withdraw most models)."""


class SyncFailed(SyncError):
    """Some providers of a multi-provider sync failed; transient if any failure was."""

    def __init__(self, errors: list[SyncError]) -> None:
        super().__init__("; ".join(str(e) for e in errors), transient=any(e.transient for e in errors))
        self.errors = errors


# -- step 1: read the catalogs -------------------------------------------------------------------


class CatalogKind(StrEnum):
    MODELS = "models"
    EMBEDDINGS = "embeddings"
    TABLE = "table"


@dataclass(frozen=True)
class Catalog:
    """One price list as read, before parsing."""

    kind: CatalogKind
    #: The URL (without credentials) or file it came from; shown in reports.
    location: str
    #: What the rows' ``source`` column says (at most 255 characters).
    source: str
    payload: dict[str, Any]
    fetched_at: datetime
    #: Where the data says it comes from, for a table with a ``source``/``as_of`` header.
    note: str = ""


def display_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, so it can be printed and stored."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def openrouter_urls(base_url: str) -> tuple[str, str]:
    """The models and embeddings catalog URLs under an OpenRouter base URL (``.../api/v1``).

    ``output_modalities=all``: without it ``/models`` lists only text-output models, and the
    image and audio generators would be withdrawn by every sync.
    """
    base = base_url.rstrip("/")
    return f"{base}/models?output_modalities=all", f"{base}/embeddings/models"


def openrouter_endpoint(base_url: str | None = None) -> tuple[str, str | None]:
    """The base URL to sync from and the API key to send there (``None``: send none).

    The key (``OPENROUTER_API_KEY``) goes only to the configured ``OPENROUTER_BASE_URL``: a URL
    given explicitly (a test server, a mirror) gets no key. The catalogs need none anyway.
    """
    configured = llm_settings().provider(OPENROUTER)
    configured_url = configured.base_url or provider_specs()[OPENROUTER].default_base_url
    if base_url is not None and base_url.rstrip("/") != configured_url.rstrip("/"):
        return base_url, None
    return configured_url, configured.api_key


def fetch_openrouter_catalogs(
    base_url: str,
    *,
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> list[Catalog]:
    """Both OpenRouter catalogs over HTTP; ``FetchError`` if either cannot be read whole."""
    models_url, embeddings_url = openrouter_urls(base_url)
    headers = {"Accept": "application/json", "User-Agent": "llm-platform-pricing-sync"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    catalogs = []
    with httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, follow_redirects=False) as client:
        for kind, url in ((CatalogKind.MODELS, models_url), (CatalogKind.EMBEDDINGS, embeddings_url)):
            shown = display_url(url)
            _say(progress, f"fetching {shown} ...")
            started = time.monotonic()
            body = _get(client, url, shown=shown, timeout=timeout, secret=api_key)
            payload = _json_catalog(body, f"GET {shown}")
            _say(progress, f"  {len(body) / 1024:,.0f} KB, {len(payload['data'])} entries "
                           f"in {time.monotonic() - started:.2f} s")
            catalogs.append(Catalog(kind, shown, shown.split("?", 1)[0][:255], payload, timezone.now()))
    return catalogs


def read_catalog_file(path: str | Path, *, kind: CatalogKind | None = None) -> Catalog:
    """A saved catalog: an OpenRouter ``/models`` or ``/embeddings/models`` body, or a price table.

    Without ``kind`` it is told from the content: a ``models`` object is a price table; a
    ``data`` list whose entries all output embeddings is the embeddings catalog; any other
    ``data`` list is the models catalog.
    """
    path = Path(path)
    where = f"{path}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FetchError(f"{where}: cannot read: {exc.strerror or exc}") from None
    payload = _json_object(raw, where)
    detected = _detect_kind(payload)
    if detected is None:
        raise FetchError(f"{where}: not a catalog: expected an object with a 'data' list or a 'models' object")
    if kind is CatalogKind.TABLE and detected is not CatalogKind.TABLE:
        raise FetchError(f"{where}: expected a price table (an object with a 'models' object)")
    if kind is not None and kind is not CatalogKind.TABLE and detected is CatalogKind.TABLE:
        raise FetchError(f"{where}: expected an OpenRouter catalog, found a price table")
    # A declared kind wins: an embeddings catalog may list a model without output modalities.
    kind = kind or detected
    if kind is CatalogKind.TABLE:
        return _table_catalog(payload, where, source=f"file:{path.name}")
    _json_catalog_payload(payload, where)
    return Catalog(kind, where, f"file:{path.name}"[:255], payload, timezone.now())


def read_price_table(path: str | Path | None = None) -> Catalog:
    """Our maintained OpenAI price table (``data/openai-prices.json`` unless ``path`` is given)."""
    path = Path(path) if path is not None else OPENAI_TABLE
    catalog = read_catalog_file(path, kind=CatalogKind.TABLE)
    if path.resolve() == OPENAI_TABLE.resolve():
        # Same source name as the rows the bundled data migration wrote.
        return Catalog(catalog.kind, catalog.location, f"bundled:{path.name}", catalog.payload,
                       catalog.fetched_at, catalog.note)
    return catalog


def _detect_kind(payload: dict[str, Any]) -> CatalogKind | None:
    if isinstance(payload.get("models"), dict):
        return CatalogKind.TABLE
    data = payload.get("data")
    if not isinstance(data, list):
        return None

    def outputs(entry: Any) -> Any:
        architecture = entry.get("architecture") if isinstance(entry, dict) else None
        return architecture.get("output_modalities") if isinstance(architecture, dict) else None

    if data and all(outputs(entry) == ["embeddings"] for entry in data):
        return CatalogKind.EMBEDDINGS
    return CatalogKind.MODELS


def _table_catalog(payload: dict[str, Any], where: str, *, source: str) -> Catalog:
    """A price table's header: ``as_of`` (a date) is when its prices were read."""
    as_of = payload.get("as_of")
    try:
        if not isinstance(as_of, str):
            raise ValueError
        fetched_at = datetime.combine(date.fromisoformat(as_of), datetime.min.time(), tzinfo=UTC)
    except ValueError:
        raise FetchError(f"{where}: the table needs an 'as_of' date (YYYY-MM-DD), got {as_of!r}") from None
    origin = payload.get("source")
    note = f"as of {as_of}" + (f"; source: {origin}" if isinstance(origin, str) and origin else "")
    return Catalog(CatalogKind.TABLE, where, source[:255], payload, fetched_at, note)


def _get(client: httpx.Client, url: str, *, shown: str, timeout: float, secret: str | None) -> bytes:
    what = f"GET {shown}"
    try:
        with client.stream("GET", url) as response:
            if not response.is_success:
                response.read()
                detail = _error_detail(response)
                status = response.status_code
                raise FetchError(
                    _redact(f"{what}: HTTP {status} {response.reason_phrase}{detail}", secret),
                    transient=status >= 500 or status == 429,
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CATALOG_BYTES:
                    raise FetchError(f"{what}: response larger than {MAX_CATALOG_BYTES // (1024 * 1024)} MB")
            return bytes(body)
    except httpx.TimeoutException as exc:
        raise FetchError(f"{what}: timed out after {timeout:g} s ({type(exc).__name__})", transient=True) from None
    except httpx.ConnectError as exc:
        raise FetchError(_redact(f"{what}: cannot connect: {exc}", secret), transient=True) from None
    except httpx.HTTPError as exc:
        raise FetchError(_redact(f"{what}: {type(exc).__name__}: {exc}", secret), transient=True) from None


def _error_detail(response: httpx.Response) -> str:
    """The provider's own error message, if it sent one: ``": Invalid API key"``."""
    try:
        error = json.loads(response.content).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        return ""
    if not isinstance(message, str) or not message.strip():
        return ""
    line = " ".join(message.split())
    return f": {line[:200]}"


def _redact(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    """The JSON object in ``body``, numbers as ``Decimal`` so no price goes through a float."""
    try:
        payload = json.loads(body, parse_float=Decimal)
    except ValueError as exc:  # also UnicodeDecodeError
        raise FetchError(f"{what}: malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise FetchError(f"{what}: not a catalog: expected a JSON object, got {type(payload).__name__}")
    return payload


def _json_catalog(body: bytes, what: str) -> dict[str, Any]:
    payload = _json_object(body, what)
    _json_catalog_payload(payload, what)
    return payload


def _json_catalog_payload(payload: dict[str, Any], what: str) -> None:
    if not isinstance(payload.get("data"), list):
        raise FetchError(f"{what}: not an OpenRouter catalog: expected an object with a 'data' list")


# -- step 2: parse -----------------------------------------------------------------------------


class CatalogInfo(BaseModel):
    """One catalog in a report: where it came from and what its entries gave."""

    kind: CatalogKind
    location: str
    entries: int
    accepted: int
    rejected: int
    #: Entries already given by an earlier catalog of the same sync (skipped).
    duplicates: int = 0
    note: str = ""


@dataclass
class ParsedCatalogs:
    """The catalogs of one sync, parsed and merged."""

    provider: str
    accepted: list[ModelPricing] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    catalogs: list[CatalogInfo] = field(default_factory=list)
    kinds: set[CatalogKind] = field(default_factory=set)

    def listed(self) -> set[str]:
        """Every id the catalogs named, valid or not: a listed model is never withdrawn."""
        return {p.model_id for p in self.accepted} | {model_id for model_id, _ in self.rejected}

    def scope(self) -> Q | None:
        """The stored rows these catalogs are the complete list of (``None``: all the provider's).

        Reading only one of OpenRouter's two catalogs (offline) says nothing about the models
        of the other one, so those keep their state.
        """
        if self.provider != OPENROUTER or {CatalogKind.MODELS, CatalogKind.EMBEDDINGS} <= self.kinds:
            return None
        embeddings = Q(output_modalities__contains=["embeddings"])
        return embeddings if CatalogKind.EMBEDDINGS in self.kinds else ~embeddings


def parse_catalogs(provider: str, catalogs: Iterable[Catalog], *, progress: Progress | None = None) -> ParsedCatalogs:
    """Validate every entry; a model listed by two catalogs is taken from the first."""
    parsed = ParsedCatalogs(provider)
    seen: set[str] = set()
    for catalog in catalogs:
        result = _parse(provider, catalog)
        fresh = [p for p in result.accepted if p.model_id not in seen]
        rejected = [(r.model_id, r.reason) for r in result.rejected if r.model_id not in seen]
        duplicates = len(result.accepted) + len(result.rejected) - len(fresh) - len(rejected)
        seen.update(p.model_id for p in fresh)
        seen.update(model_id for model_id, _ in rejected)
        parsed.accepted += fresh
        parsed.rejected += rejected
        parsed.kinds.add(catalog.kind)
        entries = len(result.accepted) + len(result.rejected)
        info = CatalogInfo(kind=catalog.kind, location=catalog.location, entries=entries, accepted=len(fresh),
                           rejected=len(rejected), duplicates=duplicates, note=catalog.note)
        parsed.catalogs.append(info)
        _say(progress, f"parsed {catalog.kind} catalog: {entries} entries, {len(fresh)} accepted, "
                       f"{len(rejected)} rejected" + (f", {duplicates} already listed" if duplicates else ""))
    return parsed


def _parse(provider: str, catalog: Catalog) -> CatalogParseResult:
    try:
        if catalog.kind is CatalogKind.TABLE:
            return parse_price_table(catalog.payload, provider=provider, source=catalog.source,
                                     fetched_at=catalog.fetched_at)
        if provider != OPENROUTER:
            raise ValueError(f"an OpenRouter catalog cannot give {provider} prices; use a price table")
        return parse_openrouter_catalog(catalog.payload, source=catalog.source, fetched_at=catalog.fetched_at)
    except ValueError as exc:
        raise FetchError(f"{catalog.location}: {exc}") from None


# -- step 3 and 4: apply and report ------------------------------------------------------------


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
            lines.append(f"  {info.kind} catalog {info.location}: {info.entries} entries, {info.accepted} accepted, "
                         f"{info.rejected} rejected{extra}")
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
        section("Rejected", [f"! {r.model_id}: {r.reason}" for r in self.rejected],
                "invalid prices, not applied (a stored price is kept)")
        return "\n".join(lines)


def apply_catalogs(
    parsed: ParsedCatalogs,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> SyncReport:
    """Apply parsed catalogs in one transaction and report; ``dry_run`` rolls the transaction back.

    ``SyncRefused`` (and nothing written) if the sync would withdraw more than half of the
    provider's current models, unless ``force``.
    """
    from apps.llm.models import ModelPrice

    now = now or timezone.now()
    verb = "checking" if dry_run else "applying"
    _say(progress, f"{verb} {len(parsed.accepted)} prices of {parsed.provider} in one transaction ...")
    with transaction.atomic():
        result = sync_prices(ModelPrice, parsed.accepted, provider=parsed.provider, now=now,
                             listed=parsed.listed(), scope=parsed.scope())
        withdrawn, active = len(result.deactivated), result.active_before
        if not force and active >= GUARDED_FROM and withdrawn > active * MAX_DEACTIVATED_SHARE:
            raise SyncRefused(
                f"refusing to deactivate {withdrawn} of {active} current {parsed.provider} models: the catalog "
                f"({', '.join(info.location for info in parsed.catalogs)}) looks incomplete; check it, then re-run "
                f"with --force"
            )
        if dry_run:
            transaction.set_rollback(True)
    _say(progress, "rolled back (dry run)" if dry_run else "committed")
    return build_report(parsed, result, now=now, dry_run=dry_run)


def build_report(parsed: ParsedCatalogs, result: SyncResult, *, now: datetime, dry_run: bool) -> SyncReport:
    """The report of ``result``, models in id order so two reports of a catalog read the same."""
    by_id = {p.model_id: p for p in parsed.accepted}
    changed = []
    for model_id, diff in sorted(result.changed.items()):
        tiers = diff.get("tiers")
        other = diff.get("extra_prices")
        components = {k: v for k, v in diff.items() if k not in ("tiers", "extra_prices")}
        changed.append(PriceChange(
            model_id=model_id, components=components, tiers=tiers,
            other=f"extra_prices {other[0]} -> {other[1]}" if other else "",
        ))
    return SyncReport(
        provider=parsed.provider,
        synced_at=now,
        dry_run=dry_run,
        catalogs=parsed.catalogs,
        added=[AddedModel(model_id=m, prices=by_id[m].prices(), tiers=len(by_id[m].tiers)) for m in sorted(result.added)],
        changed=changed,
        deactivated=sorted(result.deactivated),
        reactivated=sorted(result.reactivated),
        unchanged=len(result.unchanged),
        rejected=[RejectedEntry(model_id=m, reason=reason) for m, reason in parsed.rejected],
    )


# -- the whole sync ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRequest:
    """What to sync, from where. With no file, OpenRouter is read over HTTP; OpenAI from our table.

    ``from_file`` is a saved catalog (either OpenRouter format, or a price table);
    ``embeddings_from_file`` a saved embeddings catalog. Files mean offline: no network at all.
    ``base_url`` replaces ``OPENROUTER_BASE_URL`` (and then no API key is sent).
    """

    provider: str = OPENROUTER
    from_file: str | Path | None = None
    embeddings_from_file: str | Path | None = None
    base_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    dry_run: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise SyncError(f"unknown provider {self.provider!r}: expected one of {', '.join(PROVIDERS)}")
        if self.provider == OPENAI and (self.embeddings_from_file or self.base_url):
            raise SyncError("the openai prices come from a table: --embeddings-from-file and --base-url do not apply")
        if self.base_url and (self.from_file or self.embeddings_from_file):
            raise SyncError("--base-url reads over HTTP; it cannot be combined with catalog files")
        if self.timeout <= 0:
            raise SyncError("the timeout must be positive")


def read_catalogs(request: SyncRequest, *, progress: Progress | None = None) -> list[Catalog]:
    """Step 1 for ``request``: every catalog read whole, or ``SyncError`` (nothing written yet)."""
    if request.provider == OPENAI:
        catalog = read_price_table(request.from_file)
        _say(progress, f"read {catalog.location} ({catalog.note})")
        return [catalog]
    if request.from_file or request.embeddings_from_file:
        catalogs = []
        if request.from_file:
            catalogs.append(read_catalog_file(request.from_file))
        if request.embeddings_from_file:
            catalogs.append(read_catalog_file(request.embeddings_from_file, kind=CatalogKind.EMBEDDINGS))
        kinds = [c.kind for c in catalogs]
        if CatalogKind.TABLE in kinds:
            raise SyncError(f"{request.from_file}: a price table cannot give openrouter prices")
        if len(kinds) != len(set(kinds)):
            raise SyncError(f"{request.from_file} is an embeddings catalog too: give the models catalog instead")
        for catalog in catalogs:
            _say(progress, f"read {catalog.kind} catalog {catalog.location}: {len(catalog.payload['data'])} entries")
        return catalogs
    base_url, api_key = openrouter_endpoint(request.base_url)
    return fetch_openrouter_catalogs(base_url, api_key=api_key, timeout=request.timeout, progress=progress)


def run_sync(request: SyncRequest, *, now: datetime | None = None, progress: Progress | None = None) -> SyncReport:
    """Read, parse and apply (or with ``dry_run``, only compute) a provider's prices."""
    catalogs = read_catalogs(request, progress=progress)
    parsed = parse_catalogs(request.provider, catalogs, progress=progress)
    return apply_catalogs(parsed, now=now, dry_run=request.dry_run, force=request.force, progress=progress)


def record_sync(request: SyncRequest, *, trigger: str, progress: Progress | None = None) -> SyncReport:
    """``run_sync``, with its outcome stored as a ``PricingSyncRun`` (ok or failed, and why).

    A failure is stored, then raised again for the caller (the command turns it into a
    ``CommandError``, the actor into a retry when it is transient).
    """
    from apps.llm.models import PricingSyncRun

    if request.dry_run:
        raise ValueError("a dry run changes nothing and is not recorded; call run_sync")
    started_at, clock = timezone.now(), time.monotonic()
    run = PricingSyncRun(provider=request.provider, trigger=trigger, started_at=started_at)
    try:
        run.source = describe_source(request)
        report = run_sync(request, now=started_at, progress=progress)
    except BaseException as exc:  # also the worker's time limit: the run must say it ended
        run.status = PricingSyncRun.Status.FAILED
        run.error = str(exc) if isinstance(exc, SyncError) else f"{type(exc).__name__}: {exc}"
        _finish(run, clock)
        raise
    run.status = PricingSyncRun.Status.OK
    run.set_report(report)
    _finish(run, clock)
    return report


def describe_source(request: SyncRequest) -> str:
    """Where ``request`` reads its prices, for a run that may fail before reading them."""
    if request.provider == OPENAI:
        return str(request.from_file or OPENAI_TABLE.name)
    files = [str(f) for f in (request.from_file, request.embeddings_from_file) if f]
    if files:
        return ", ".join(files)
    return display_url(openrouter_endpoint(request.base_url)[0])


def _finish(run: Any, clock: float) -> None:
    run.finished_at = timezone.now()
    run.duration_ms = round((time.monotonic() - clock) * 1000)
    try:
        run.save()
    except Exception:  # the database itself may be what failed: keep the original error
        logger.exception("could not record the pricing sync run")
        if run.status == "ok":
            raise


# -- formatting --------------------------------------------------------------------------------


def _per_token(component: str) -> bool:
    return component in PER_TOKEN_EXTRAS or (component in PRICE_COMPONENTS and component not in PER_UNIT_COMPONENTS)


def price_text(component: str, value: Decimal) -> str:
    """``0.0000003`` prompt -> ``$0.3/M``; per-unit prices as they are: ``$0.01``."""
    if _per_token(component):
        return f"${_plain(value * MILLION)}/M"
    return f"${_plain(value)}"


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


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


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
