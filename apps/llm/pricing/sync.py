"""The model-pricing sync: read a provider's price list, check it, and make it the current prices.

One sync is four steps, each a function (here, in ``catalogs`` and in ``report``) so the management command, the scheduled actor
and the tests share them:

1. **read** the catalogs: OpenRouter's ``GET /models`` and ``GET /embeddings/models`` over HTTP
   (``fetch_openrouter_catalogs``), a saved catalog (``read_catalog_file``), or our maintained
   OpenAI table (``read_price_table``). Any network, HTTP or JSON problem raises a ``SyncError``
   before anything is written.
2. **parse** them with the catalog parser (``parse_catalogs``): every price becomes a ``Decimal``
   per token (or per unit), and entries with invalid prices (negative, the ``-1`` sentinel,
   absurdly high) are rejected with their reason, never applied.
3. **apply** them in one transaction (``apply_catalogs``, through ``store.sync_prices``):
   a changed price closes the old row and starts a new one at the sync time, so past calls keep
   the price they were charged; models the catalogs no longer list are marked inactive, not
   deleted; a listed model that was inactive is reactivated. ``dry_run`` rolls it all back.
4. **report**: a ``SyncReport`` with what was added, changed (old -> new per component),
   deactivated, reactivated and rejected; ``format()`` renders it for logs and the admin.

``run_sync`` chains the steps; ``record_sync`` also stores the outcome as a ``PricingSyncRun``.
API keys are sent only to the configured OpenRouter URL and never appear in messages or rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.llm.pricing.catalogs import (
    DEFAULT_TIMEOUT,
    OPENAI_TABLE,
    PROVIDERS,
    Catalog,
    CatalogKind,
    ParsedCatalogs,
    Progress,
    SyncError,
    SyncRefused,
    display_url,
    fetch_openrouter_catalogs,
    openrouter_endpoint,
    parse_catalogs,
    read_catalog_file,
    read_price_table,
    say_progress,
)
from apps.llm.pricing.report import SyncReport, build_report
from apps.llm.pricing.store import sync_prices
from apps.llm.transport.providers import OPENAI, OPENROUTER

#: A sync that would withdraw more than this share of a provider's current models is refused
#: (unless forced): a truncated or filtered catalog must not switch off cost accounting.
MAX_DEACTIVATED_SHARE = Decimal("0.5")
#: ...but only from this many current models: a nearly empty table may change wholesale.
GUARDED_FROM = 10


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
    say_progress(progress, f"{verb} {len(parsed.accepted)} prices of {parsed.provider} in one transaction ...")
    with transaction.atomic():
        result = sync_prices(
            ModelPrice, parsed.accepted, provider=parsed.provider, now=now, listed=parsed.listed(), scope=parsed.scope()
        )
        withdrawn, active = len(result.deactivated), result.active_before
        if not force and active >= GUARDED_FROM and withdrawn > active * MAX_DEACTIVATED_SHARE:
            raise SyncRefused(
                f"refusing to deactivate {withdrawn} of {active} current {parsed.provider} models: the catalog "
                f"({', '.join(info.location for info in parsed.catalogs)}) looks incomplete; check it, then re-run "
                f"with --force"
            )
        if dry_run:
            transaction.set_rollback(True)
    say_progress(progress, "rolled back (dry run)" if dry_run else "committed")
    return build_report(parsed, result, now=now, dry_run=dry_run)


# -- the whole sync ----------------------------------------------------------------------------

logger = logging.getLogger(__name__)


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
        say_progress(progress, f"read {catalog.location} ({catalog.note})")
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
            say_progress(
                progress, f"read {catalog.kind} catalog {catalog.location}: {len(catalog.payload['data'])} entries"
            )
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
