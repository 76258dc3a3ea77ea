"""Traces: every LLM call made inside a named block of work, grouped, with its nested steps.

    with llm_trace("support.reply", subject=ticket) as trace:
        classify = client.chat_completion(...)          # in the trace's root span
        with llm_trace("draft"):                         # a child span of it
            client.chat_completion(...)
    trace.id                                             # LLMTrace row of the root

A trace's row (``LLMTrace``) is written when it starts and closed when it ends (ok, or error
with the exception); the request-log writer adds each call to its span's totals and to the
root's. Calls made in other threads join the trace when those threads run in a copy of the
context (``contextvars.copy_context().run``, as asyncio tasks do), and in Dramatiq messages sent
inside it (``apps.llm.accounting.trace_middleware``). Writing the row never fails the block:
with the database away, the calls are still logged with their trace ids.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from apps.llm.accounting.context import SpanRef, current_context, using_context
from apps.llm.accounting.records import ERROR, CallRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trace:
    """A running span: ``id`` is its ``LLMTrace`` row's, ``trace_id`` its root's (the same for a root)."""

    id: uuid.UUID
    trace_id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str

    @property
    def is_root(self) -> bool:
        return self.parent_id is None


@contextmanager
def llm_trace(
    name: str,
    *,
    subject: Any = None,
    user: Any = None,
    feature: str | None = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[Trace]:
    """Group the calls made in the block under a trace (a child span when a trace is running)."""
    if not name or len(name) > 200:
        raise ValueError(f"A trace's name is 1 to 200 characters, not {name!r}")
    outer = current_context()
    span_id = uuid.uuid4()
    trace = Trace(
        id=span_id,
        trace_id=outer.span.trace_id if outer.span else span_id,
        parent_id=outer.span.span_id if outer.span else None,
        name=name,
    )
    context = outer.narrowed(
        user=user,
        feature=feature,
        tags=tags,
        metadata=metadata,
        subject=subject,
        span=SpanRef(trace.trace_id, span_id),
    )
    _started(trace, context)
    with using_context(context):
        try:
            yield trace
        except BaseException as error:
            _ended(trace, error)
            raise
    _ended(trace, None)


def _started(trace: Trace, context: Any) -> None:
    from apps.llm.models import LLMTrace

    fields = context.record_fields
    try:
        LLMTrace.objects.create(
            id=trace.id,
            trace_id=trace.trace_id,
            parent_id=trace.parent_id,
            name=trace.name,
            subject_type_id=fields["subject_type_id"],
            subject_id=fields["subject_id"],
            user_id=fields["user_id"],
            started_at=timezone.now(),
        )
    except DatabaseError:
        logger.warning("Trace %s (%s) not stored: the database is unreachable", trace.name, trace.id, exc_info=True)


def _ended(trace: Trace, error: BaseException | None) -> None:
    from apps.llm.models import LLMTrace

    status = LLMTrace.Status.OK if error is None else LLMTrace.Status.ERROR
    try:
        LLMTrace.objects.filter(pk=trace.id).update(
            status=status, ended_at=timezone.now(), error="" if error is None else f"{type(error).__name__}: {error}"
        )
    except DatabaseError:
        logger.warning("Trace %s (%s) not closed: the database is unreachable", trace.name, trace.id, exc_info=True)


#: What a span's totals add up, from the records of its calls.
_TOTALS = ("requests", "failures", "cache_hits", "total_tokens", "cost", "latency_ms_sum")


def add(records: Iterable[CallRecord], *, cursor: Any) -> None:
    """Add newly logged ``records`` to their spans' totals and their traces' (call inside the log's transaction)."""
    sums: dict[uuid.UUID, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0), 0.0])
    for r in records:
        if r.trace_id is None:
            continue
        for row in {r.trace_id, r.span_id or r.trace_id}:  # once when the call is in the root span
            s = sums[row]
            s[0] += 1
            s[1] += r.status == ERROR
            s[2] += r.cached
            s[3] += 0 if r.cached else r.usage.total_tokens
            s[4] += r.cost or 0
            s[5] += r.latency_ms
    if not sums:
        return
    from apps.llm.models import LLMTrace

    table = LLMTrace._meta.db_table
    rows = sorted(sums.items())  # the same lock order in every writer
    values = ", ".join(["(%s::uuid, %s::int, %s::int, %s::int, %s::bigint, %s::numeric, %s::float8)"] * len(rows))
    cursor.execute(
        f"UPDATE {table} t SET "
        + ", ".join(f"{c} = t.{c} + v.{c}" for c in _TOTALS)
        + f" FROM (VALUES {values}) AS v(id, {', '.join(_TOTALS)}) WHERE t.id = v.id",
        [value for key, s in rows for value in (key, *s)],
    )
