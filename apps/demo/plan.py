"""The seeded plan of a demo run: which calls, when, by whom, on which model, how slow.

Planning everything up front from one seed, before any call is made, makes a run reproducible:
the same seed gives the same traffic whatever the simulator or the cache answer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from apps.demo.recorder import Stamp
from apps.demo.texts import (
    AUDIENCES,
    KNOWLEDGE_QUESTIONS,
    SEARCH_QUERIES,
    SUMMARY_MODULES,
    SUPPORT_QUESTIONS,
    SUPPORT_SYSTEM,
    docstring_sentences,
    module_doc,
)
from apps.demo.users import DEMO_USER_COUNT
from apps.knowledge.answer import SYSTEM_PROMPT  # the prompt the real answer() sends

__all__ = [
    "CALLS_PER_INCIDENT",
    "DEMO_MODELS",
    "EMBEDDING_MODEL",
    "FEATURES",
    "MODEL_LATENCY_MS",
    "Kind",
    "PlannedCall",
    "plan_traffic",
]

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

#: One scripted incident (every try fails) per this many calls, at least one per run.
CALLS_PER_INCIDENT = 40

Kind = Literal["chat", "stream", "embedding"]


@dataclass(frozen=True)
class PlannedCall:
    """One call of the plan, with everything the simulator and the recorder need to replay it."""

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
        """What the recorder puts on the record(s) this call produces."""
        return Stamp(self.at, self.latency_ms, self.error_latency_ms, self.first_token_share)


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


def _choose(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _timestamps(rng: random.Random, calls: int, days: int, now: datetime) -> list[datetime]:
    """Moments over the last ``days`` UTC days (today included), every day at least once.

    More traffic lately and on weekdays, mostly in working hours, so the charts look lived in.
    """
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    offsets = list(range(days))
    weights = [
        (1 + 0.8 * (days - 1 - d) / max(days - 1, 1)) * (0.5 if (today - timedelta(days=d)).weekday() >= 5 else 1.0)
        for d in offsets
    ]
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
    sentences = docstring_sentences(SUMMARY_MODULES)
    docs = {name: module_doc(name)[:2500] for name in SUMMARY_MODULES}
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
            if (
                call.kind != "embedding"
                and (feature, model) in seen_prefix
                and feature in ("support.reply", "knowledge.answer")
                and rng.random() < 0.7
            ):
                # Provider-side prompt caching of the long shared system prompt.
                call = replace(call, cached_fraction=round(rng.uniform(0.3, 0.7), 2))
            seen_prefix.add((feature, model))
            earlier.append(call)
        reasoning = _reasoning_tokens(rng, call.model)
        latency = rng.lognormvariate(math.log(MODEL_LATENCY_MS[call.model]), 0.45) + reasoning * 4
        call = replace(
            call,
            reasoning_tokens=reasoning,
            latency_ms=latency,
            error_latency_ms=rng.lognormvariate(math.log(300), 0.6),
            first_token_share=rng.uniform(0.12, 0.35),
        )
        plan.append(call)
    return _with_incidents(rng, plan)


def _fresh_call(
    rng: random.Random,
    feature: str,
    model: str,
    at: datetime,
    user: int | None,
    sentences: list[str],
    docs: dict[str, str],
) -> PlannedCall:
    if feature == "support.reply":
        question = rng.choice(SUPPORT_QUESTIONS)
        if rng.random() < 0.75:  # most tickets carry their own details; the rest are plain FAQs
            question += f" (ticket #{rng.randint(10_000, 99_999)}, account acme-{rng.randint(100, 999)})"
        messages = [{"role": "system", "content": SUPPORT_SYSTEM}, {"role": "user", "content": question}]
        kind: Kind = "stream" if rng.random() < 0.5 else "chat"
        return PlannedCall(at, feature, kind, model, messages, params={"temperature": 0.3}, user=user)
    if feature == "summarize":
        module = rng.choice(SUMMARY_MODULES)
        prompt = (
            f"Summarize this documentation for {rng.choice(AUDIENCES)} in {rng.choice((3, 5))} bullet "
            f"points.\n\n{docs[module]}"
        )
        messages = [
            {"role": "system", "content": "You write concise, accurate summaries."},
            {"role": "user", "content": prompt},
        ]
        return PlannedCall(at, feature, "chat", model, messages, params={"temperature": 0.2}, user=user)
    if feature == "search.rerank":
        passages = rng.sample(sentences, 5)
        listing = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
        prompt = (
            f"Query: {rng.choice(SEARCH_QUERIES)}\n\nPassages:\n{listing}\n\n"
            'Return {"ranking": [passage numbers, most relevant first]}.'
        )
        messages = [{"role": "user", "content": prompt}]
        return PlannedCall(
            at,
            feature,
            "chat",
            model,
            messages,
            user=user,
            params={"temperature": 0, "response_format": {"type": "json_object"}},
        )
    if feature == "knowledge.answer":
        passages = rng.sample(sentences, rng.randint(3, 6))
        context = "\n\n".join(f"[{i}] (Python standard library)\n{p}" for i, p in enumerate(passages, 1))
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {rng.choice(KNOWLEDGE_QUESTIONS)}"},
        ]
        kind = "stream" if rng.random() < 0.3 else "chat"
        return PlannedCall(at, feature, kind, model, messages, user=user, params={"temperature": 0, "max_tokens": 1024})
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
    candidates = [
        i
        for i, c in enumerate(plan)
        if c.feature == "support.reply" and not c.repeat and "ticket #" in c.messages[-1]["content"]
    ]
    if not plan or not candidates:
        return plan
    count = min(len(candidates), max(1, len(plan) // CALLS_PER_INCIDENT))
    for i in rng.sample(candidates, count):
        plan[i] = replace(plan[i], incident=rng.choice((429, 500, 503)))
    return plan
