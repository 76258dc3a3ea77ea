"""Who and what a call is for, set once for a block of code.

    with llm_context(user=request.user, feature="support.reply", tags=["beta"],
                     metadata={"ticket": 42}, subject=ticket):
        client.chat_completion(...)   # recorded with all of that

Contexts nest: an inner one overrides user, feature and subject, adds its tags to the outer
ones and its metadata keys over theirs. A call's own ``user=``, ``feature=``, ``tags=`` and
``metadata=`` arguments apply last, the same way. Built on contextvars, so it follows asyncio
tasks and threads started in a copy of the context (``contextvars.copy_context().run``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Subject:
    """A Django object a call is about, as the request log stores it: content type and primary key."""

    type_id: int
    object_id: str

    @classmethod
    def of(cls, obj: Any) -> Subject:
        from django.contrib.contenttypes.models import ContentType

        if obj.pk is None:
            raise ValueError(f"An unsaved {type(obj).__name__} cannot be the subject of LLM calls: save it first")
        # get_for_model caches per model: one query per model and process, then none.
        return cls(ContentType.objects.get_for_model(obj).pk, str(obj.pk))


@dataclass(frozen=True)
class SpanRef:
    """Where a call sits in a trace (``llm_trace``): the trace's id and the innermost span's."""

    trace_id: uuid.UUID
    span_id: uuid.UUID


@dataclass(frozen=True)
class CallContext:
    user: Any = None
    feature: str = ""
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = _NO_METADATA
    subject: Subject | None = None
    span: SpanRef | None = None

    def narrowed(
        self,
        *,
        user: Any = None,
        feature: str | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        subject: Any = None,
        span: SpanRef | None = None,
    ) -> CallContext:
        """This context with an inner block's settings applied (see the module's docstring)."""
        return replace(
            self,
            user=user if user is not None else self.user,
            feature=feature if feature is not None else self.feature,
            tags=merge_tags(self.tags, tags),
            metadata={**self.metadata, **metadata} if metadata else self.metadata,
            subject=(subject if isinstance(subject, Subject) else Subject.of(subject))
            if subject is not None
            else self.subject,
            span=span or self.span,
        )

    @cached_property
    def record_fields(self) -> Mapping[str, Any]:
        """The ``CallRecord`` fields of a call made in this context (computed once: contexts do not change)."""
        return {
            "user_id": getattr(self.user, "pk", self.user) if self.user is not None else None,
            "feature": self.feature,
            "tags": self.tags,
            "metadata": dict(self.metadata) or None,
            "subject_type_id": self.subject.type_id if self.subject else None,
            "subject_id": self.subject.object_id if self.subject else None,
            "trace_id": self.span.trace_id if self.span else None,
            "span_id": self.span.span_id if self.span else None,
        }


def merge_tags(outer: tuple[str, ...], inner: Iterable[str] | None) -> tuple[str, ...]:
    """``outer`` then the new ones of ``inner``, each once; a tag is a non-empty string of at most 100 characters."""
    if not inner:
        return outer
    if isinstance(inner, str):
        raise TypeError(f"tags must be a list of strings, not the string {inner!r}")
    merged = list(outer)
    for tag in inner:
        if not isinstance(tag, str) or not tag or len(tag) > 100:
            raise ValueError(f"A tag must be a non-empty string of at most 100 characters, not {tag!r}")
        if tag not in merged:
            merged.append(tag)
    return tuple(merged)


_current: ContextVar[CallContext] = ContextVar("llm_call_context", default=CallContext())  # noqa: B039 (frozen)


def current_context() -> CallContext:
    return _current.get()


def enter_context(context: CallContext) -> Token[CallContext]:
    """Make ``context`` the current one until ``leave_context(token)`` (for hooks that cannot use ``with``)."""
    return _current.set(context)


def leave_context(token: Token[CallContext]) -> None:
    _current.reset(token)


@contextmanager
def using_context(context: CallContext) -> Iterator[CallContext]:
    """Make ``context`` the current one for the block."""
    token = enter_context(context)
    try:
        yield context
    finally:
        leave_context(token)


@contextmanager
def llm_context(
    *,
    user: Any = None,
    feature: str | None = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    subject: Any = None,
) -> Iterator[CallContext]:
    with using_context(
        _current.get().narrowed(user=user, feature=feature, tags=tags, metadata=metadata, subject=subject)
    ) as context:
        yield context
