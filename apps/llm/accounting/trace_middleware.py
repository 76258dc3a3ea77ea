"""Dramatiq middleware: a message carries the LLM context it was sent in to the worker that runs it.

A document uploaded inside ``llm_trace("knowledge.upload", subject=document)`` is embedded by a
worker: with this middleware its embedding calls join the upload's trace, with its subject,
tags, user and feature. List it in the broker's MIDDLEWARE (``config/broker.py`` does).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy

from apps.llm.accounting.context import (
    CallContext,
    SpanRef,
    Subject,
    current_context,
    enter_context,
    leave_context,
)

#: The message option the context travels in.
OPTION = "llm_context"


class LLMContextMiddleware(dramatiq.Middleware):
    def __init__(self) -> None:
        self._tokens = threading.local()  # a worker thread runs one message at a time

    @property
    def actor_options(self) -> set[str]:
        return {OPTION}

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int) -> None:
        if OPTION not in message.options and (carried := _carried(current_context())):
            message.options[OPTION] = carried

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        carried = message.options.get(OPTION)
        self._tokens.token = enter_context(_context(carried)) if carried else None

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        token = getattr(self._tokens, "token", None)
        if token is not None:
            leave_context(token)
            self._tokens.token = None

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)


def _carried(context: CallContext) -> dict[str, Any] | None:
    """The context as JSON for the message, or None when there is nothing to carry."""
    fields = dict(context.record_fields)
    if not any(fields.values()):
        return None
    for name in ("trace_id", "span_id"):
        fields[name] = fields[name] and str(fields[name])
    fields["tags"] = list(fields["tags"])
    return fields


def _context(carried: dict[str, Any]) -> CallContext:
    subject = Subject(carried["subject_type_id"], carried["subject_id"]) if carried.get("subject_type_id") else None
    span = (
        SpanRef(uuid.UUID(carried["trace_id"]), uuid.UUID(carried["span_id"] or carried["trace_id"]))
        if carried.get("trace_id")
        else None
    )
    return CallContext(
        user=carried.get("user_id"),
        feature=carried.get("feature") or "",
        tags=tuple(carried.get("tags") or ()),
        metadata=carried.get("metadata") or {},
        subject=subject,
        span=span,
    )
