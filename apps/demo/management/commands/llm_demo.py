"""``manage.py llm_demo``: fill a fresh install's request log with simulated traffic."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import NoReverseMatch, reverse

from apps.demo.demo import DEMO_PROVIDER, DemoSummary, reset_demo_data, run_demo


def _usd(value: Decimal) -> str:
    return f"${value:.4f}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0%"


def _dashboard_path() -> str:
    # Wherever the admin mounts the cost dashboard; the address if it is not there yet.
    try:
        return reverse("admin:llm_dashboard")
    except NoReverseMatch:
        return "/admin/llm/dashboard/"


def _traces_path() -> str:
    try:
        return reverse("admin:llm_llmtrace_changelist")
    except NoReverseMatch:  # the trace admin is not mounted
        return ""


def _not_a_retry(record: logging.LogRecord) -> bool:
    # The simulated 429s and 500s are the point of the demo; one warning line each would bury
    # the summary. Other client warnings (an unknown price...) still show.
    return not str(record.msg).startswith("LLM call failed")


class Command(BaseCommand):
    help = (
        "Send a few hundred simulated LLM calls (bundled loopback simulator: no network, no keys, no cost) "
        "across models, demo users and features over the last days, and a few documents through the "
        f'knowledge pipeline, so the dashboards have data. Logged with provider "{DEMO_PROVIDER}".'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--calls", type=int, default=300, help="calls to make (default 300)")
        parser.add_argument(
            "--days", type=int, default=14, help="spread them over this many days, today included (default 14)"
        )
        parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same traffic")
        parser.add_argument("--no-documents", action="store_true", help="skip the demo documents")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="first delete earlier demo data (log rows and rollups with provider "
            f'"{DEMO_PROVIDER}", demo documents); with --calls 0 --no-documents, only delete',
        )
        parser.add_argument("--force", action="store_true", help="run even with DJANGO_ENV=production")

    def handle(
        self, *args: Any, calls: int, days: int, seed: int, no_documents: bool, reset: bool, force: bool, **options: Any
    ) -> None:
        if calls < 0:
            raise CommandError("--calls must be 0 or more")
        if days < 1:
            raise CommandError("--days must be 1 or more")
        if settings.ENVIRONMENT == "production" and not force:
            raise CommandError("Refusing to write simulated traffic to a production database (use --force).")

        if reset:
            removed = reset_demo_data()
            self.stdout.write(
                f"Removed earlier demo data: {removed.requests} requests, {removed.rollups} "
                f"rollup rows, {removed.traces} trace spans, {removed.documents} documents."
            )
        if calls == 0 and no_documents:
            return

        self.stdout.write(
            f"Simulating {calls} LLM calls over the last {days} days (seed {seed}) "
            f"on a loopback simulator: no network, no keys, nothing billed."
        )
        verbose = options["verbosity"] >= 2

        def progress(done: int, total: int) -> None:
            if verbose and (done % 50 == 0 or done == total):
                self.stdout.write(f"  {done}/{total} calls")

        client_log = logging.getLogger("apps.llm.client")
        if not verbose:
            client_log.addFilter(_not_a_retry)
        try:
            summary = run_demo(calls=calls, days=days, seed=seed, documents=not no_documents, progress=progress)
        finally:
            client_log.removeFilter(_not_a_retry)
        self._report(summary)

    def _report(self, s: DemoSummary) -> None:
        out = self.stdout.write
        out(f"Demo users: {', '.join(s.users)}")
        for line in s.documents:
            out(f"Document {line}")
        out("")
        out(f"Calls       {s.calls} on {len(s.days)} days, {len(s.features)} features")
        out(f"Errors      {s.errors} ({_share(s.errors, s.calls)}); {s.retried} more succeeded on a retry")
        out(f"Cache hits  {s.cache_hits} ({_share(s.cache_hits, s.calls)}), saving {_usd(s.saved_cost)}")
        out(
            f"Cost        {_usd(s.cost)} from the price table (the simulator reported {_usd(s.provider_cost)}, "
            f"as OpenRouter would)"
        )
        traces = _traces_path()
        out(
            f"Traces      {s.traces} ({s.failed_traces} ended in an error), about demo users and documents, "
            f"tagged exp:prompt-v1/exp:prompt-v2, rag, beta" + (f": {traces}" if traces and s.traces else "")
        )
        out("")
        width = max([len(m) for m in s.models] + [5])
        out(f"{'Model':<{width}}  {'calls':>5}  {'errors':>6}  {'hits':>4}  {'tokens':>8}  {'cost':>9}")
        for model, t in sorted(s.models.items(), key=lambda item: -item[1].cost):
            out(f"{model:<{width}}  {t.calls:>5}  {t.errors:>6}  {t.cache_hits:>4}  {t.tokens:>8}  {_usd(t.cost):>9}")
        out("")
        out(
            f'Logged with provider "{DEMO_PROVIDER}". Remove it with: manage.py llm_demo --reset --calls 0 '
            f"--no-documents"
        )
        out(self.style.SUCCESS(f"Open http://127.0.0.1:8000{_dashboard_path()} to see it (make run)."))
