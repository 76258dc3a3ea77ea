"""Who a call is for and what it is for, set once for a block of code.

    with llm_context(user=request.user, feature="support.reply"):
        client.chat_completion(...)   # recorded with that user and feature

Explicit ``user=`` / ``feature=`` arguments of a call win over the context. Built on
contextvars, so it follows threads' and asyncio tasks' own context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallContext:
    user: Any = None
    feature: str = ""


_current: ContextVar[CallContext] = ContextVar("llm_call_context", default=CallContext())  # noqa: B039 (frozen)


def current_context() -> CallContext:
    return _current.get()


@contextmanager
def llm_context(*, user: Any = None, feature: str | None = None) -> Iterator[CallContext]:
    outer = _current.get()
    context = CallContext(
        user=user if user is not None else outer.user, feature=feature if feature is not None else outer.feature
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
