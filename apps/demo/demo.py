"""Demo traffic: a few hundred simulated LLM calls in the request log of a fresh install.

``run_demo()`` starts the bundled OpenAI-protocol simulator on loopback, points a private
``LLMClient`` at it and replays a seeded plan of calls: several models, users and features,
streaming calls, embeddings, repeated prompts (cache hits), reasoning and cached tokens, rate
limits and server errors, spread over the last few days so the dashboards have a history.

Each record goes through ``DemoRecorder`` on its way to the real request log, which

* labels it provider ``"simulator"``: the client talks to the simulator as if it were
  OpenRouter, so the costs come from the real price table and the simulator reports
  OpenRouter's ``usage.cost`` from the bundled catalog;
* backdates ``created_at`` to the planned moment, since every call really happens now;
* models the latency, since the loopback server answers in a millisecond. Cache hits keep
  their measured latency: that one is real.

Rows and rollups are then written by the production code path, so the rollups match the log
exactly, and ``reset_demo_data()`` removes everything with provider ``"simulator"``. Nothing
here runs unless the ``llm_demo`` command asks for it.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import random
import textwrap
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from importlib import import_module
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from apps.llm import errors
from apps.llm.accounting.budgets import BudgetGuard
from apps.llm.accounting.context import llm_context
from apps.llm.accounting.records import SUCCESS, CallRecord, Recorder
from apps.llm.client import LLMClient
from apps.llm.conf import llm_settings
from apps.llm.pricing.lookup import ModelsCache
from apps.llm.testing.simulator import CHAT, OpenAISimulator
from apps.llm.transport.retry import RetryPolicy

logger = logging.getLogger(__name__)

#: The provider every demo record is logged under; ``--reset`` deletes by it.
DEMO_PROVIDER = "simulator"
DEMO_USER_COUNT = 5
DEMO_DOCUMENT_PREFIX = "[demo] "
#: Only ever sent to the loopback simulator.
SIMULATOR_KEY = "sk-or-demo-simulator-not-a-real-key"

EMBEDDING_MODEL = "openai/text-embedding-3-small"
#: Median latency of a non-streamed answer, in ms (reasoning time comes on top).
MODEL_LATENCY_MS: dict[str, float] = {
    "openai/gpt-4o-mini": 650,
    "openai/gpt-4.1-mini": 850,
    "anthropic/claude-sonnet-4.5": 2300,
    "google/gemini-2.5-flash": 1000,
    "deepseek/deepseek-chat": 1700,
    EMBEDDING_MODEL: 160,
}
DEMO_MODELS: tuple[str, ...] = tuple(MODEL_LATENCY_MS)

#: Share of calls the simulator answers with a 429 or a 500 (the client retries once).
ERROR_RATE = 0.06
#: Tries per call: one retry shows up as attempts=2; two failures in a row as an error row.
MAX_ATTEMPTS = 2
#: One scripted incident (every try fails) per this many calls, at least one per run.
CALLS_PER_INCIDENT = 40

Kind = Literal["chat", "stream", "embedding"]


def demo_user_email(n: int) -> str:
    return f"demo-user-{n}@example.com"


# -- what the log receives ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """When a demo call is logged as having happened, and how long a real provider would take."""

    at: datetime
    #: None: keep the measured latency (local embeddings really run here).
    latency_ms: float | None = None
    error_latency_ms: float = 300.0
    #: Time to first token as a share of the latency, for streamed answers.
    first_token_share: float = 0.25


@dataclass
class ModelTally:
    calls: int = 0
    errors: int = 0
    cache_hits: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass
class DemoSummary:
    """What a demo run wrote to the request log (from the very records it wrote)."""

    calls: int = 0
    errors: int = 0
    retried: int = 0
    cache_hits: int = 0
    cost: Decimal = Decimal(0)
    provider_cost: Decimal = Decimal(0)
    saved_cost: Decimal = Decimal(0)
    days: set[date] = field(default_factory=set)
    features: Counter = field(default_factory=Counter)
    models: dict[str, ModelTally] = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def add(self, record: CallRecord) -> None:
        ok = record.status == SUCCESS
        self.calls += 1
        self.errors += not ok
        self.retried += ok and record.attempts > 1
        self.cache_hits += record.cached
        self.cost += record.cost or 0
        self.provider_cost += record.provider_cost or 0
        self.saved_cost += record.saved_cost or 0
        self.days.add(record.created_at.date())
        self.features[record.feature] += 1
        tally = self.models.setdefault(record.model or record.requested_model, ModelTally())
        tally.calls += 1
        tally.errors += not ok
        tally.cache_hits += record.cached
        tally.tokens += 0 if record.cached else record.usage.total_tokens
        tally.cost += record.cost or 0


class DemoRecorder:
    """Relabels and backdates the demo client's records, then hands them to the real request log.

    Calls are made one at a time, so ``stamp`` (set before each call) belongs to the record(s)
    that call produces.
    """

    def __init__(self, inner: Recorder):
        self.inner = inner
        self.stamp: Stamp | None = None
        self.summary = DemoSummary()

    def record(self, call: CallRecord) -> None:
        call = self.relabel(call)
        self.summary.add(call)
        self.inner.record(call)

    def relabel(self, call: CallRecord) -> CallRecord:
        changes: dict[str, Any] = {"provider": DEMO_PROVIDER}
        stamp = self.stamp
        if stamp is not None:
            changes["created_at"] = stamp.at
            if stamp.latency_ms is not None and not call.cached:
                tries = max(call.attempts, 1)
                if call.status == SUCCESS:
                    latency = stamp.latency_ms + (tries - 1) * stamp.error_latency_ms
                else:
                    latency = tries * stamp.error_latency_ms
                changes["latency_ms"] = round(latency, 1)
                if call.time_to_first_token_ms is not None:
                    changes["time_to_first_token_ms"] = round(latency * stamp.first_token_share, 1)
        return replace(call, **changes)

    def flush(self, timeout: float = 60.0) -> bool:
        flush = getattr(self.inner, "flush", None)
        return flush(timeout) if flush is not None else True


class _NoBudgets(BudgetGuard):
    """Simulated spending must not use up the real budgets of today."""

    def budgets(self) -> list:
        return []


# -- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCall:
    at: datetime
    feature: str
    kind: Kind
    model: str
    messages: list[dict[str, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    #: Index into the demo users; None: a background job with no user.
    user: int | None = None
    reasoning_tokens: int = 0
    cached_fraction: float = 0.0
    #: Status of a scripted incident that fails every try of this call (0: none).
    incident: int = 0
    latency_ms: float = 0.0
    error_latency_ms: float = 300.0
    first_token_share: float = 0.25
    repeat: bool = False

    def stamp(self) -> Stamp:
        return Stamp(self.at, self.latency_ms, self.error_latency_ms, self.first_token_share)


SUPPORT_SYSTEM = (
    "You are the support assistant of Acme Cloud, a hosting service. Answer in a friendly, "
    "concise way. Rules: never promise refunds (say a human will review the request); link to "
    "https://status.acme.example for outages; billing questions about invoices older than 12 "
    "months go to billing@acme.example; never ask for passwords or full card numbers; if the "
    "customer is angry, apologise once and move to concrete next steps; when unsure, say you "
    "will escalate to a human within one business day. Plans: Starter (1 vCPU, 1 GB), Team "
    "(4 vCPU, 8 GB, 3 seats), Business (16 vCPU, 64 GB, SSO, 99.95% SLA). Backups run nightly "
    "and are kept 14 days on Team and 35 days on Business. Data centres: Frankfurt, Virginia, "
    "Singapore. Support hours: 24/7 chat, phone on weekdays 8:00-18:00 CET."
)
SUPPORT_QUESTIONS = (
    "How do I reset my password?",
    "Can I move my project from Frankfurt to Virginia?",
    "My deploy has been stuck on 'building' for twenty minutes, what should I do?",
    "Why was I charged twice this month?",
    "How long do you keep backups on the Team plan?",
    "Do you support single sign-on?",
    "The dashboard shows a 502 error for my app.",
    "Can I downgrade from Business to Team without losing data?",
    "How do I add a teammate to my account?",
    "Is there an SLA on the Starter plan?",
    "I want a refund for last month's outage.",
    "How do I restore yesterday's backup?",
)
SEARCH_QUERIES = (
    "parse a csv file with a header", "serialize python objects to json", "sort a list with a heap",
    "compare two texts line by line", "generate a random sample", "compute a median", "regular expression groups",
    "unique identifiers", "hash a file", "command line arguments", "schedule an event", "count items in a list",
)
KNOWLEDGE_QUESTIONS = (
    "How do I write JSON to a file?", "What does csv.DictReader do?", "How can I compute the median of a list?",
    "How do I find the closest matches to a word?", "What is a heap queue?", "How do I shuffle a list in place?",
    "What regular expression flags exist?", "How do I read a CSV file with a custom delimiter?",
    "What is the difference between mean and median?", "How do I escape special characters in a regex?",
)
SUMMARY_MODULES = ("json", "csv", "statistics", "argparse", "re", "uuid", "hashlib", "heapq", "itertools",
                   "random", "sched", "typing", "difflib", "collections")
AUDIENCES = ("a new developer", "an experienced engineer")

#: (weight, share of repeats, {model: weight}).
FEATURES: dict[str, tuple[float, float, dict[str, float]]] = {
    "support.reply": (0.32, 0.12, {"openai/gpt-4o-mini": 0.6, "anthropic/claude-sonnet-4.5": 0.4}),
    "summarize": (0.20, 0.08, {"google/gemini-2.5-flash": 0.55, "openai/gpt-4o-mini": 0.45}),
    "search.rerank": (0.16, 0.05, {"deepseek/deepseek-chat": 0.5, "openai/gpt-4.1-mini": 0.5}),
    "knowledge.answer": (0.16, 0.10, {"anthropic/claude-sonnet-4.5": 0.45, "openai/gpt-4o-mini": 0.55}),
    "knowledge.embed": (0.16, 0.15, {EMBEDDING_MODEL: 1.0}),
}
#: Who sends how much: a few heavy users and a tail.
USER_WEIGHTS = (0.34, 0.25, 0.18, 0.13, 0.10)


def _module_doc(name: str) -> str:
    return textwrap.dedent(inspect.getdoc(import_module(name)) or "")


def _sentences(names: Sequence[str]) -> list[str]:
    text = " ".join(" ".join(_module_doc(n).split()) for n in names)
    return [s.strip() + "." for s in text.split(". ") if 40 <= len(s.strip()) <= 300]


def _choose(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _timestamps(rng: random.Random, calls: int, days: int, now: datetime) -> list[datetime]:
    """Moments over the last ``days`` UTC days (today included), every day at least once.

    More traffic lately and on weekdays, mostly in working hours, so the charts look lived in.
    """
    today = now.astimezone(dt_timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    offsets = list(range(days))
    weights = [(1 + 0.8 * (days - 1 - d) / max(days - 1, 1))
               * (0.5 if (today - timedelta(days=d)).weekday() >= 5 else 1.0) for d in offsets]
    chosen = offsets[:calls] + rng.choices(offsets, weights=weights, k=max(calls - days, 0))
    moments = []
    for d in chosen:
        start = today - timedelta(days=d)
        hour = min(max(rng.gauss(14, 3.5), 0), 23.99)
        # Drawn whether used or not: the number of draws must not depend on the time of day,
        # or the rest of the plan would change with it.
        fallback = rng.random()
        at = start + timedelta(hours=hour)
        if at > now:  # today: only the part of the day that has passed
            at = start + (now - start) * fallback
        moments.append(at)
    return sorted(moments)


def plan_traffic(calls: int, *, days: int, seed: int, now: datetime) -> list[PlannedCall]:
    """The calls of a demo run, in time order.

    The same seed gives the same calls in the same order whatever ``now`` is; only their
    timestamps move with it.
    """
    rng = random.Random(seed)
    sentences = _sentences(SUMMARY_MODULES)
    docs = {name: _module_doc(name)[:2500] for name in SUMMARY_MODULES}
    history: dict[str, list[PlannedCall]] = {name: [] for name in FEATURES}
    seen_prefix: set[tuple[str, str]] = set()
    names = list(FEATURES)
    plan: list[PlannedCall] = []
    for at in _timestamps(rng, calls, days, now):
        feature = rng.choices(names, weights=[FEATURES[n][0] for n in names])[0]
        _, repeat_share, models = FEATURES[feature]
        background = feature == "knowledge.embed" and rng.random() < 0.7  # indexing jobs have no user
        user = None if background else rng.choices(range(DEMO_USER_COUNT), weights=USER_WEIGHTS)[0]
        earlier = history[feature]
        if earlier and rng.random() < repeat_share:
            # The same request again (a FAQ, a re-opened page): the response cache answers it.
            call = replace(rng.choice(earlier), at=at, user=user, incident=0, repeat=True)
        else:
            model = _choose(rng, models)
            call = _fresh_call(rng, feature, model, at, user, sentences, docs)
            if call.kind != "embedding" and (feature, model) in seen_prefix and feature in (
                    "support.reply", "knowledge.answer") and rng.random() < 0.7:
                # Provider-side prompt caching of the long shared system prompt.
                call = replace(call, cached_fraction=round(rng.uniform(0.3, 0.7), 2))
            seen_prefix.add((feature, model))
            earlier.append(call)
        reasoning = _reasoning_tokens(rng, call.model)
        latency = rng.lognormvariate(math.log(MODEL_LATENCY_MS[call.model]), 0.45) + reasoning * 4
        call = replace(call, reasoning_tokens=reasoning, latency_ms=latency,
                       error_latency_ms=rng.lognormvariate(math.log(300), 0.6),
                       first_token_share=rng.uniform(0.12, 0.35))
        plan.append(call)
    return _with_incidents(rng, plan)


def _fresh_call(rng: random.Random, feature: str, model: str, at: datetime, user: int | None,
                sentences: list[str], docs: dict[str, str]) -> PlannedCall:
    if feature == "support.reply":
        question = rng.choice(SUPPORT_QUESTIONS)
        if rng.random() < 0.75:  # most tickets carry their own details; the rest are plain FAQs
            question += f" (ticket #{rng.randint(10_000, 99_999)}, account acme-{rng.randint(100, 999)})"
        messages = [{"role": "system", "content": SUPPORT_SYSTEM}, {"role": "user", "content": question}]
        kind: Kind = "stream" if rng.random() < 0.5 else "chat"
        return PlannedCall(at, feature, kind, model, messages, params={"temperature": 0.3}, user=user)
    if feature == "summarize":
        module = rng.choice(SUMMARY_MODULES)
        prompt = (f"Summarize this documentation for {rng.choice(AUDIENCES)} in {rng.choice((3, 5))} bullet "
                  f"points.\n\n{docs[module]}")
        messages = [{"role": "system", "content": "You write concise, accurate summaries."},
                    {"role": "user", "content": prompt}]
        return PlannedCall(at, feature, "chat", model, messages, params={"temperature": 0.2}, user=user)
    if feature == "search.rerank":
        passages = rng.sample(sentences, 5)
        listing = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
        prompt = (f"Query: {rng.choice(SEARCH_QUERIES)}\n\nPassages:\n{listing}\n\n"
                  'Return {"ranking": [passage numbers, most relevant first]}.')
        messages = [{"role": "user", "content": prompt}]
        return PlannedCall(at, feature, "chat", model, messages, user=user,
                           params={"temperature": 0, "response_format": {"type": "json_object"}})
    if feature == "knowledge.answer":
        from apps.knowledge.answer import (
            SYSTEM_PROMPT,  # the prompt the real answer() sends
        )

        passages = rng.sample(sentences, rng.randint(3, 6))
        context = "\n\n".join(f"[{i}] (Python standard library)\n{p}" for i, p in enumerate(passages, 1))
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {rng.choice(KNOWLEDGE_QUESTIONS)}"}]
        kind = "stream" if rng.random() < 0.3 else "chat"
        return PlannedCall(at, feature, kind, model, messages, user=user,
                           params={"temperature": 0, "max_tokens": 1024})
    texts = rng.sample(sentences, rng.randint(1, 8))
    return PlannedCall(at, feature, "embedding", model, texts=texts, user=user)


def _reasoning_tokens(rng: random.Random, model: str) -> int:
    if model == "google/gemini-2.5-flash":
        return rng.randint(100, 1200)  # thinks by default
    if model == "anthropic/claude-sonnet-4.5" and rng.random() < 0.35:
        return rng.randint(200, 1600)  # extended thinking, when the feature asks for it
    return 0


def _with_incidents(rng: random.Random, plan: list[PlannedCall]) -> list[PlannedCall]:
    """Mark a few calls whose every try fails, so each run logs errors whatever the dice say.

    Only fresh support tickets: they carry a unique ticket number, so the cache can never
    answer them and leave the scripted failures to the next call.
    """
    candidates = [i for i, c in enumerate(plan)
                  if c.feature == "support.reply" and not c.repeat and "ticket #" in c.messages[-1]["content"]]
    if not plan or not candidates:
        return plan
    count = min(len(candidates), max(1, len(plan) // CALLS_PER_INCIDENT))
    for i in rng.sample(candidates, count):
        plan[i] = replace(plan[i], incident=rng.choice((429, 500, 503)))
    return plan


# -- running it -----------------------------------------------------------------------------------


def ensure_demo_users(count: int = DEMO_USER_COUNT) -> list[Any]:
    """``demo-user-N@example.com``, created if missing, with no usable password."""
    User = get_user_model()
    users = []
    for n in range(1, count + 1):
        email = demo_user_email(n)
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User(email=email, username=f"demo-user-{n}", first_name="Demo", last_name=f"User {n}")
            if any(f.name == "is_test_account" for f in User._meta.fields):
                setattr(user, "is_test_account", True)  # django-cfg's flag for non-customers
            user.set_unusable_password()
            user.save()
        users.append(user)
    return users


def demo_documents() -> list[tuple[str, str, str]]:
    """(file name, title, text) of the demo documents, made from standard library docstrings."""
    groups = (
        ("demo-data-formats.md", "Data formats: json and csv", ("json", "csv")),
        ("demo-numbers.md", "Numbers and randomness: statistics, random, heapq", ("statistics", "random", "heapq")),
        ("demo-text.md", "Text processing: re, difflib, string", ("re", "difflib", "string")),
    )
    documents = []
    for name, title, modules in groups:
        body = "\n\n".join(f"## {m}\n\n{_module_doc(m)}" for m in modules)
        text = f"# {title}\n\nDemo document made by `manage.py llm_demo` from Python's docstrings.\n\n{body}\n"
        documents.append((name, DEMO_DOCUMENT_PREFIX + title, text))
    return documents


def _request_log() -> Recorder:
    from apps.llm.accounting.request_log import SyncDatabaseRecorder, default_recorder

    recorder = default_recorder()
    if recorder is None:  # LLM_REQUEST_LOG=off: the demo exists to fill the log, so write anyway
        config = llm_settings()
        recorder = SyncDatabaseRecorder(store_text=config.store_text, text_limit=config.text_limit)
    return recorder


def _simulator_catalog(models: Sequence[str]) -> dict[str, Any]:
    """The bundled OpenRouter catalog entries of ``models``, so the simulator reports usage.cost."""
    from apps.llm.pricing.store import DATA_DIR

    wanted = set(models)
    entries = {}
    for path in sorted(DATA_DIR.glob("openrouter-*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")).get("data", []):
            if entry.get("id") in wanted:
                entries[entry["id"]] = entry
    return {"data": list(entries.values())}


def _demo_client(sim: OpenAISimulator, recorder: DemoRecorder, seed: int) -> LLMClient:
    client = LLMClient(
        apikey_openrouter=SIMULATOR_KEY, openrouter_base_url=sim.openrouter_base_url, configure_from_env=False,
        timeout=30.0,
        # Quick retries: the simulator's Retry-After would only slow the demo down.
        retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=0.005, max_delay=0.02, max_retry_after=0.02,
                          total_timeout=30.0, rng=random.Random(seed)),
        # A private cache: real traffic must never be answered from simulated responses (or
        # the reverse), and each run starts cold so the same seed gives the same hits.
        cache_backend=LocMemCache(f"llm-demo-{uuid.uuid4().hex}", {"MAX_ENTRIES": 1_000_000}),
        models_cache=ModelsCache(),
        recorders=[recorder],
    )
    client.budgets = _NoBudgets()
    return client


def _perform(client: LLMClient, sim: OpenAISimulator, call: PlannedCall, users: list[Any]) -> None:
    sim.reasoning_tokens = call.reasoning_tokens
    sim.cached_fraction = call.cached_fraction
    if call.incident:
        sim.fail_next(CHAT, MAX_ATTEMPTS, status=call.incident, retry_after=0.01 if call.incident == 429 else None)
    user = users[call.user] if call.user is not None else None
    try:
        with llm_context(user=user, feature=call.feature):
            if call.kind == "embedding":
                client.generate_embedding(call.texts, model=call.model)
            elif call.kind == "stream":
                client.chat_completion_stream(call.messages, call.model, **call.params).text()
            else:
                client.chat_completion(call.messages, call.model, **call.params)
    except errors.LLMError:
        pass  # the client has logged the failure: showing failures is part of the demo


def _add_documents(client: LLMClient, recorder: DemoRecorder, sim: OpenAISimulator, owner: Any,
                   at: datetime) -> list[str]:
    """The demo documents through the knowledge pipeline; what happened to each, one line each."""
    from apps.knowledge.documents import DuplicateDocument, add_document
    from apps.knowledge.pipeline import process_document

    outcomes = []
    error_rate, sim.error_rate = sim.error_rate, 0.0  # an upload is not the place to show retries
    try:
        for i, (name, title, text) in enumerate(demo_documents()):
            recorder.stamp = Stamp(min(at + timedelta(minutes=17 * i), timezone.now()))
            try:
                # Processed inside the upload's transaction: by the time the worker gets the
                # queued message the document is ready, so it skips it (and never embeds it
                # again with the real providers).
                with transaction.atomic():
                    added = add_document(name=name, data=text.encode(), title=title, user=owner)
                    document = process_document(added.pk, client=client)
            except DuplicateDocument as exists:
                outcomes.append(f"{title}: already there (document {exists.existing.pk})")
                continue
            except errors.LLMError as error:
                outcomes.append(f"{title}: not added ({error})")
                continue
            if document is None:  # claimed by someone else first: cannot happen inside the transaction
                outcomes.append(f"{title}: added, left to the worker")
            else:
                outcomes.append(f"{document.title}: {document.status}, {document.chunk_count} chunks, "
                                f"{document.embedding_model}")
    finally:
        sim.error_rate = error_rate
    return outcomes


def run_demo(*, calls: int = 300, days: int = 14, seed: int = 0, documents: bool = True,
             now: datetime | None = None, progress: Callable[[int, int], None] | None = None) -> DemoSummary:
    """Make the demo traffic and write it to the request log; returns what was written."""
    if days < 1 or calls < 0:
        raise ValueError("days must be at least 1 and calls at least 0")
    now = now or timezone.now()
    users = ensure_demo_users()
    plan = plan_traffic(calls, days=days, seed=seed, now=now)
    recorder = DemoRecorder(_request_log())
    recorder.summary.users = [u.email for u in users]
    with OpenAISimulator(error_rate=ERROR_RATE, seed=seed, openrouter_catalog=_simulator_catalog(DEMO_MODELS),
                         keep_requests=100) as sim:
        client = _demo_client(sim, recorder, seed)
        try:
            if documents:
                first_day = (now - timedelta(days=days - 1)).replace(hour=9, minute=0, second=0, microsecond=0)
                recorder.summary.documents = _add_documents(client, recorder, sim, users[0], min(first_day, now))
            for done, call in enumerate(plan, 1):
                recorder.stamp = call.stamp()
                _perform(client, sim, call, users)
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
    requests: int
    rollups: int
    documents: int


def reset_demo_data() -> ResetResult:
    """Delete the demo's log rows, their rollups and the demo documents.

    The finest rollup's rows are keyed by provider, so the ``"simulator"`` ones hold demo
    traffic only: deleting both sides, then rebuilding the coarser rollups of those days from
    the finest, keeps every rollup equal to the log.
    """
    from apps.knowledge.models import Document
    from apps.llm.accounting.rollups import rebuild_coarse
    from apps.llm.models import LLMRequest, LLMUsageDaily

    with transaction.atomic():
        requests, _ = LLMRequest.objects.filter(provider=DEMO_PROVIDER).delete()
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
    return ResetResult(requests=requests, rollups=rollups, documents=len(documents))
