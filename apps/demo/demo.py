"""Demo traffic: a few hundred simulated LLM calls in the request log of a fresh install.

``run_demo()`` starts the bundled OpenAI-protocol simulator on loopback, points a private
``LLMClient`` at it and replays a seeded plan of calls: several models, users and features,
streaming calls, embeddings, repeated prompts (cache hits), reasoning and cached tokens, rate
limits and server errors, spread over the last few days so the dashboards have a history. About a
third of the support replies and knowledge answers run as multi-step traces (``llm_trace``) about a
demo user or document, with tags and metadata (``apps.demo.traces``).

Each record goes through ``DemoRecorder`` on its way to the real request log, which

* labels it provider ``"simulator"``: the client talks to the simulator as if it were
  OpenRouter, so the costs come from the real price table and the simulator reports
  OpenRouter's ``usage.cost`` from the bundled catalog;
* backdates ``created_at`` to the planned moment, since every call really happens now;
* models the latency, since the loopback server answers in a millisecond. Cache hits keep
  their measured latency: that one is real.

Rows and rollups (the tag rollup too) and the traces' totals are then written by the production
code path, so they match the log exactly, and ``reset_demo_data()`` removes everything with
provider ``"simulator"`` and the traces of those calls. Nothing here runs unless the
``llm_demo`` command asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from apps.demo.client import demo_client, demo_simulator, perform, request_log
from apps.demo.documents import DEMO_DOCUMENT_PREFIX, add_demo_documents
from apps.demo.plan import DEMO_MODELS, plan_traffic
from apps.demo.recorder import DEMO_PROVIDER, DemoRecorder, Stamp
from apps.demo.summary import DemoSummary
from apps.demo.traces import PlannedTrace, plan_traces, run_trace
from apps.demo.users import demo_user_email, ensure_demo_users
from apps.knowledge.models import Document
from apps.llm.accounting.rollups import rebuild_coarse
from apps.llm.models import LLMRequest, LLMTrace, LLMUsageDaily

# The demo is split into one module per concept (plan, recorder, summary, documents, users,
# texts, client); these names are re-exported because the llm_demo command and the tests
# import them from here.
__all__ = [
    "DEMO_DOCUMENT_PREFIX",
    "DEMO_MODELS",
    "DEMO_PROVIDER",
    "DemoRecorder",
    "DemoSummary",
    "ResetResult",
    "Stamp",
    "demo_user_email",
    "plan_traffic",
    "reset_demo_data",
    "run_demo",
]

logger = logging.getLogger(__name__)


def run_demo(
    *,
    calls: int = 300,
    days: int = 14,
    seed: int = 0,
    documents: bool = True,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Make the demo traffic and write it to the request log; returns what was written."""
    if days < 1 or calls < 0:
        raise ValueError("days must be at least 1 and calls at least 0")
    now = now or timezone.now()
    users = ensure_demo_users()
    plan = plan_traces(plan_traffic(calls, days=days, seed=seed, now=now), seed=seed)
    recorder = DemoRecorder(request_log())
    recorder.summary.users = [u.email for u in users]
    with demo_simulator(seed) as sim:
        client = demo_client(sim, recorder, seed)
        try:
            if documents:
                first_day = (now - timedelta(days=days - 1)).replace(hour=9, minute=0, second=0, microsecond=0)
                recorder.summary.documents = add_demo_documents(client, recorder, sim, users[0], min(first_day, now))
            # The knowledge traces are about these (made above, or by an earlier run).
            documents_in_traces = list(
                Document.objects.filter(title__startswith=DEMO_DOCUMENT_PREFIX, status=Document.Status.READY).order_by(
                    "pk"
                )
            )
            for done, item in enumerate(plan, 1):
                if isinstance(item, PlannedTrace):
                    ok = run_trace(client, sim, recorder, item, users, documents_in_traces)
                    recorder.summary.add_trace(ok=ok)
                else:
                    recorder.stamp = item.stamp()
                    perform(client, sim, item, users)
                if progress is not None:
                    progress(done, len(plan))
        finally:
            recorder.stamp = None
            client.close()
            client.cache.backend.clear()
            if not recorder.flush():
                logger.warning("The request log did not catch up in time; the rest is in the spool")
    return recorder.summary


@dataclass(frozen=True)
class ResetResult:
    """What ``reset_demo_data()`` deleted, for the command to report."""

    requests: int
    rollups: int
    documents: int
    traces: int = 0


def reset_demo_data() -> ResetResult:
    """Delete the demo's log rows, their rollups and the demo documents.

    The finest rollup's rows are keyed by provider, so the ``"simulator"`` ones hold demo
    traffic only: deleting both sides, then rebuilding the coarser rollups of those days from
    the finest, keeps every rollup equal to the log (the tag rollup is rebuilt from the log).
    The demo's traces are those of its calls: every span of a trace shares the root's id.
    """
    with transaction.atomic():
        demo_calls = LLMRequest.objects.filter(provider=DEMO_PROVIDER)
        traces, _ = LLMTrace.objects.filter(
            trace_id__in=demo_calls.filter(trace__isnull=False).values("trace_id")
        ).delete()
        requests, _ = demo_calls.delete()
        demo_rollups = LLMUsageDaily.objects.filter(provider=DEMO_PROVIDER)
        days = demo_rollups.aggregate(first=Min("date"), last=Max("date"))
        rollups, _ = demo_rollups.delete()
        if rollups:
            rebuild_coarse(start=days["first"], end=days["last"])
        documents = list(Document.objects.filter(title__startswith=DEMO_DOCUMENT_PREFIX))
        files = [d.file for d in documents if d.file]
        for document in documents:
            document.delete()  # chunks go with it

        def delete_files() -> None:
            for f in files:
                f.delete(save=False)

        transaction.on_commit(delete_files)
    return ResetResult(requests=requests, rollups=rollups, documents=len(documents), traces=traces)
