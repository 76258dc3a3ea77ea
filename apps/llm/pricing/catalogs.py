"""Steps 1 and 2 of the pricing sync: read a provider's catalogs whole, then parse their prices.

Reading raises a ``SyncError`` (nothing is written yet) on any network, HTTP or JSON problem;
the OpenRouter API key is sent only to the configured OpenRouter URL and never appears in a message.
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
from django.db.models import Q
from django.utils import timezone
from pydantic import BaseModel

from apps.llm.conf import llm_settings
from apps.llm.pricing.sheets import (
    CatalogParseResult,
    ModelPricing,
    parse_openrouter_catalog,
    parse_price_table,
)
from apps.llm.pricing.store import DATA_DIR
from apps.llm.transport.providers import OPENAI, OPENROUTER, provider_specs

PROVIDERS = (OPENROUTER, OPENAI)

#: Seconds for each HTTP request (connect, read, write, pool): a hung server fails the sync
#: instead of holding a worker until the actor's time limit.
DEFAULT_TIMEOUT = 30.0
#: The maintained table of direct-OpenAI prices (see data/SOURCES.md).
OPENAI_TABLE = DATA_DIR / "openai-prices.json"
#: The catalogs are about 1 MB; a body 30 times that is not a catalog and is not read further.
MAX_CATALOG_BYTES = 32 * 1024 * 1024

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
    assert configured_url is not None, "OpenRouter's provider spec has a default base URL"
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
            say_progress(progress, f"fetching {shown} ...")
            started = time.monotonic()
            body = _get(client, url, shown=shown, timeout=timeout, secret=api_key)
            payload = _json_catalog(body, f"GET {shown}")
            say_progress(
                progress,
                f"  {len(body) / 1024:,.0f} KB, {len(payload['data'])} entries in {time.monotonic() - started:.2f} s",
            )
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
        return Catalog(
            catalog.kind, catalog.location, f"bundled:{path.name}", catalog.payload, catalog.fetched_at, catalog.note
        )
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
        info = CatalogInfo(
            kind=catalog.kind,
            location=catalog.location,
            entries=entries,
            accepted=len(fresh),
            rejected=len(rejected),
            duplicates=duplicates,
            note=catalog.note,
        )
        parsed.catalogs.append(info)
        say_progress(
            progress,
            f"parsed {catalog.kind} catalog: {entries} entries, {len(fresh)} accepted, "
            f"{len(rejected)} rejected" + (f", {duplicates} already listed" if duplicates else ""),
        )
    return parsed


def _parse(provider: str, catalog: Catalog) -> CatalogParseResult:
    try:
        if catalog.kind is CatalogKind.TABLE:
            return parse_price_table(
                catalog.payload, provider=provider, source=catalog.source, fetched_at=catalog.fetched_at
            )
        if provider != OPENROUTER:
            raise ValueError(f"an OpenRouter catalog cannot give {provider} prices; use a price table")
        return parse_openrouter_catalog(catalog.payload, source=catalog.source, fetched_at=catalog.fetched_at)
    except ValueError as exc:
        raise FetchError(f"{catalog.location}: {exc}") from None


def say_progress(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
