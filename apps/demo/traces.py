"""Demo traces: part of the demo's traffic grouped by ``llm_trace``, about real objects, with tags.

About a third of the support replies and knowledge answers of the plan become multi-step traces, so
the trace admin, the tag rollup and the dashboard's "spend by tag" and "most expensive traces"
have data on a fresh install:

* ``support.reply`` about the customer's account (a demo user): ``classify``, ``draft`` (the
  planned call), ``review``. The experiment arm ``exp:prompt-v2`` also ``retrieve``s passages
  (an embedding, a span nested in ``draft``); ``exp:prompt-v1`` does not. A scripted incident
  fails the draft, which ends the draft and the trace with an error and skips the review.
* ``knowledge.answer`` about a demo document: ``retrieve`` (the question's embedding), ``answer``.

Tags: the experiment arm, ``rag``, and ``beta`` for the users of the beta cohort; metadata: the
ticket, channel and prompt version, or ``top_k``. The calls run through the real client, request
log and ``llm_trace``; only the times are the demo's: the spans' rows are backdated to the plan's
moment once the trace has ended, as ``DemoRecorder`` backdates the calls, so the timeline matches the calls.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from apps.demo.client import make_call
from apps.demo.plan import EMBEDDING_MODEL, MODEL_LATENCY_MS, PlannedCall
from apps.demo.recorder import DemoRecorder
from apps.llm import errors
from apps.llm.accounting.traces import Trace, llm_trace
from apps.llm.client import LLMClient
from apps.llm.testing.simulator import OpenAISimulator

__all__ = [
    "BETA_USERS",
    "TRACED_SHARE",
    "PlannedSpan",
    "PlannedTrace",
    "plan_traces",
    "run_trace",
]

#: Share of the support replies and knowledge answers made inside a trace.
TRACED_SHARE = 0.35
#: Indexes of the demo users in the beta cohort: their traces are tagged "beta".
BETA_USERS = frozenset({1, 3})
#: The cheap model of the pipeline's helper steps.
HELPER_MODEL = "openai/gpt-4o-mini"

CLASSIFY_SYSTEM = (
    'Classify the support ticket. Return {"category": "billing" | "outage" | "account" | "how-to", '
    '"urgency": "low" | "normal" | "high"}.'
)
REVIEW_SYSTEM = (
    "You review a support assistant's draft reply against the support rules: no refund promises, "
    "no requests for passwords or card numbers, status page linked for outages. Answer OK or list "
    "the problems."
)


@dataclass(frozen=True)
class PlannedSpan:
    """A span of a planned trace: its calls and child spans, in the order they run."""

    name: str
    steps: tuple[PlannedCall | PlannedSpan, ...]

    def calls(self) -> Iterator[PlannedCall]:
        for step in self.steps:
            if isinstance(step, PlannedSpan):
                yield from step.calls()
            else:
                yield step

    def spans(self) -> int:
        return 1 + sum(step.spans() for step in self.steps if isinstance(step, PlannedSpan))


@dataclass(frozen=True)
class PlannedTrace:
    """One trace of the plan: its root span, who runs it, what it is about, its tags."""

    root: PlannedSpan
    #: When its main call happens in the plan: the trace ends about then.
    at: datetime
    user: int
    #: "user": the customer's account (the trace's user); "document": a demo document.
    subject: Literal["user", "document"]
    document: int = 0
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The application's own work before each step and at the end of each span, in ms.
    gap_ms: float = 20.0

    def start(self) -> datetime:
        """When it starts: early enough to end at ``at``, but on the same UTC day as its main call."""
        steps = sum(c.latency_ms for c in self.root.calls()) + self.gap_ms * (
            len(list(self.root.calls())) + self.root.spans()
        )
        day = self.at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(self.at - timedelta(milliseconds=steps), day)


def plan_traces(plan: Sequence[PlannedCall], *, seed: int) -> list[PlannedCall | PlannedTrace]:
    """``plan`` with some support replies and knowledge answers turned into traces (same order, same length).

    Drawn from a random generator of its own, so the calls ``plan_traffic`` makes for a seed
    stay what they were. Every scripted incident is traced: each run has traces with errors.
    """
    rng = random.Random(f"demo-traces-{seed}")
    items: list[PlannedCall | PlannedTrace] = []
    for call in plan:
        draw = rng.random()  # drawn for every call, so one call's fate does not shift the others'
        if call.user is None or call.feature not in ("support.reply", "knowledge.answer"):
            items.append(call)
        elif call.incident or draw < TRACED_SHARE:
            items.append(_support_trace(rng, call) if call.feature == "support.reply" else _knowledge_trace(rng, call))
        else:
            items.append(call)
    return items


def _helper(rng: random.Random, main: PlannedCall, kind: Literal["chat", "embedding"], **fields: Any) -> PlannedCall:
    """A helper step of ``main``'s pipeline: same moment, user and feature, its own latency."""
    model = EMBEDDING_MODEL if kind == "embedding" else HELPER_MODEL
    return PlannedCall(
        at=main.at,
        feature=main.feature,
        kind=kind,
        model=model,
        user=main.user,
        latency_ms=rng.lognormvariate(math.log(MODEL_LATENCY_MS[model]), 0.35),
        error_latency_ms=rng.lognormvariate(math.log(300), 0.6),
        first_token_share=rng.uniform(0.12, 0.35),
        **fields,
    )


def _tags(user: int, *tags: str) -> tuple[str, ...]:
    return (*tags, "beta") if user in BETA_USERS else tags


def _support_trace(rng: random.Random, draft: PlannedCall) -> PlannedTrace:
    assert draft.user is not None
    question = draft.messages[-1]["content"]
    arm = rng.choice(("v1", "v2"))
    channel = rng.choice(("chat", "email"))
    classify = _helper(
        rng,
        draft,
        "chat",
        messages=[{"role": "system", "content": CLASSIFY_SYSTEM}, {"role": "user", "content": question}],
        params={"temperature": 0, "response_format": {"type": "json_object"}},
    )
    review = _helper(
        rng,
        draft,
        "chat",
        messages=[
            {"role": "system", "content": REVIEW_SYSTEM},
            {"role": "user", "content": f"Ticket: {question}\n\nReview the draft reply to this ticket."},
        ],
        params={"temperature": 0},
    )
    drafting: tuple[PlannedCall | PlannedSpan, ...] = (draft,)
    if arm == "v2":  # the arm under test grounds its draft in retrieved passages
        retrieve = _helper(rng, draft, "embedding", texts=[question])
        drafting = (PlannedSpan("retrieve", (retrieve,)), draft)
    ticket = re.search(r"ticket #(\d+)", question)
    metadata: dict[str, Any] = {"channel": channel, "prompt": arm}
    if ticket:
        metadata["ticket"] = int(ticket.group(1))
    root = PlannedSpan(
        "support.reply",
        (PlannedSpan("classify", (classify,)), PlannedSpan("draft", drafting), PlannedSpan("review", (review,))),
    )
    return PlannedTrace(
        root,
        draft.at,
        draft.user,
        "user",
        tags=_tags(draft.user, f"exp:prompt-{arm}"),
        metadata=metadata,
        gap_ms=rng.uniform(5, 40),
    )


def _knowledge_trace(rng: random.Random, answer: PlannedCall) -> PlannedTrace:
    assert answer.user is not None
    question = answer.messages[-1]["content"].rpartition("Question: ")[2]
    retrieve = _helper(rng, answer, "embedding", texts=[question])
    top_k = sum(1 for line in answer.messages[-1]["content"].splitlines() if line.startswith("["))
    root = PlannedSpan("knowledge.answer", (PlannedSpan("retrieve", (retrieve,)), PlannedSpan("answer", (answer,))))
    return PlannedTrace(
        root,
        answer.at,
        answer.user,
        "document",
        document=rng.randrange(1_000),
        tags=_tags(answer.user, "rag"),
        metadata={"top_k": top_k},
        gap_ms=rng.uniform(5, 40),
    )


#: (span id, started, ended) on the demo clock, per span of the running trace.
_Times = list[tuple[Any, datetime, datetime]]


@contextmanager
def _span(recorder: DemoRecorder, times: _Times, name: str, gap_ms: float, **attribution: Any) -> Iterator[Trace]:
    """``llm_trace(name)``, noting when the block starts and ends on the demo clock (into ``times``)."""
    assert recorder.clock is not None
    started = recorder.clock
    span: Trace | None = None
    try:
        with llm_trace(name, **attribution) as span:
            yield span
    finally:
        recorder.clock += timedelta(milliseconds=gap_ms)
        if span is not None:
            times.append((span.id, started, recorder.clock))


def _backdate(times: _Times) -> None:
    """The spans' rows to the demo clock's times: one statement per trace, after its last span has ended."""
    from apps.llm.models import LLMTrace

    rows = [LLMTrace(id=span_id, started_at=started, ended_at=ended) for span_id, started, ended in times]
    LLMTrace.objects.bulk_update(rows, ["started_at", "ended_at"])


def _run(
    client: LLMClient,
    sim: OpenAISimulator,
    recorder: DemoRecorder,
    times: _Times,
    span: PlannedSpan,
    users: list[Any],
    gap_ms: float,
    **attribution: Any,
) -> None:
    with _span(recorder, times, span.name, gap_ms, **attribution):
        for step in span.steps:
            if isinstance(step, PlannedSpan):
                _run(client, sim, recorder, times, step, users, gap_ms)
                continue
            assert recorder.clock is not None
            recorder.clock += timedelta(milliseconds=gap_ms)
            recorder.stamp = step.stamp()
            make_call(client, sim, step, users)  # a failure ends every open span with an error


def run_trace(
    client: LLMClient,
    sim: OpenAISimulator,
    recorder: DemoRecorder,
    planned: PlannedTrace,
    users: list[Any],
    documents: Sequence[Any],
) -> bool:
    """Run one planned trace through the demo client; False if a step failed (the trace ended in error).

    A knowledge trace is about one of ``documents``; without any, about its user's account.
    """
    user = users[planned.user]
    subject = documents[planned.document % len(documents)] if planned.subject == "document" and documents else user
    recorder.clock = planned.start()
    times: _Times = []
    try:
        _run(
            client,
            sim,
            recorder,
            times,
            planned.root,
            users,
            planned.gap_ms,
            subject=subject,
            user=user,
            tags=planned.tags,
            metadata=planned.metadata,
        )
    except errors.LLMError:
        return False  # logged by the client, and on the trace's spans: showing failures is part of the demo
    finally:
        recorder.clock = None
        recorder.stamp = None
        _backdate(times)
    return True
