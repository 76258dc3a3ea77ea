"""``manage.py sync_model_pricing``: the pricing sync by hand, offline, or as a dry run."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.llm.pricing.catalogs import DEFAULT_TIMEOUT, PROVIDERS, SyncError
from apps.llm.pricing.sync import SyncRequest, record_sync, run_sync
from apps.llm.transport.providers import OPENAI, OPENROUTER


class Command(BaseCommand):
    help = (
        "Refresh model prices from the provider's price list. Changed prices get a new ModelPrice row "
        "from now on and the old row is closed (past calls keep their price); models no longer listed "
        "are marked inactive; entries with invalid prices are reported and not applied. Everything is "
        "applied in one transaction, and on any error (network, timeout, HTTP status, malformed JSON) "
        "nothing is changed and the command exits non-zero.\n\n"
        "--provider openrouter (default): GET {OPENROUTER_BASE_URL}/models and /embeddings/models. "
        "--provider openai: the maintained table apps/llm/data/openai-prices.json.\n"
        "Offline: --from-file reads a saved catalog instead (an OpenRouter /models or /embeddings/models "
        "response, told apart by content, or a price table for --provider openai) and "
        "--embeddings-from-file a saved /embeddings/models response; with files nothing is fetched, and "
        "models of a catalog that was not given are left as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider", choices=PROVIDERS, default=OPENROUTER, help="whose prices to sync (default: %(default)s)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="compute and print the summary in a transaction that is rolled back"
        )
        parser.add_argument(
            "--from-file",
            metavar="PATH",
            help="a saved catalog JSON (models or embeddings catalog; for openai a price table)",
        )
        parser.add_argument(
            "--embeddings-from-file",
            metavar="PATH",
            help="a saved OpenRouter embeddings catalog (GET /api/v1/embeddings/models)",
        )
        parser.add_argument(
            "--base-url",
            metavar="URL",
            help="OpenRouter API base instead of OPENROUTER_BASE_URL (no API key is sent to it)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            metavar="SECONDS",
            help="per HTTP request (default: %(default)s)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="apply even if more than half of the current models would be deactivated",
        )
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            metavar="N",
            help="list at most N models per section of the summary (default: all)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["provider"] == OPENAI and options["embeddings_from_file"]:
            raise CommandError("--embeddings-from-file is for --provider openrouter")
        started = time.monotonic()
        progress = self._progress if options["verbosity"] >= 1 else None
        try:
            request = SyncRequest(
                provider=options["provider"],
                from_file=options["from_file"],
                embeddings_from_file=options["embeddings_from_file"],
                base_url=options["base_url"],
                timeout=options["timeout"],
                dry_run=options["dry_run"],
                force=options["force"],
            )
            if request.dry_run:
                report = run_sync(request, progress=progress)
            else:
                report = record_sync(request, trigger="command", progress=progress)
        except SyncError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.format(limit=options["limit"]))
        if progress:
            progress(f"done in {time.monotonic() - started:.2f} s")

    def _progress(self, message: str) -> None:
        """Progress goes to stderr, one line per step, so stdout is just the summary."""
        self.stderr.write(message, style_func=lambda text: text)
        self.stderr.flush()
