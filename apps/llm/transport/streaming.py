"""``ChatStream``: text deltas of a streamed chat completion, then its usage and cost.

Every stream that sent a request ends in exactly one report to the client, however it ends:
consumed to the end, closed (``close()``, ``with``), abandoned (a ``break``, an exception in
the caller's loop, the object dropped: the generator is finalised when its last reference
goes), or cut by the provider. The report carries what arrived so far, so the client can
record the call with the tokens it cost and settle its budget reservation.

The request is sent on the first ``next()``: a stream that is never iterated sent nothing
and reports nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pydantic

from apps.llm import errors
from apps.llm.transport.responses import usage_from_sdk
from apps.llm.types import ChatResponse, Usage

#: How a stream ended, as the client is told.
CONSUMED = "consumed"  # the provider finished the answer
ABANDONED = "abandoned"  # the caller stopped reading (close, break, dropped)


@dataclass
class StreamedAnswer:
    """What a stream delivered so far: the text, tool calls and, if the provider sent it, usage."""

    requested_model: str
    provider: str = ""
    parts: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: Usage | None = None
    model: str | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    first_token_ms: float | None = None
    attempts: int = 0

    def add(self, chunk: Any, started: float) -> str | None:
        """Take one SDK chunk; returns its text, if any."""
        if chunk.usage is not None:
            self.usage = usage_from_sdk(chunk.usage, provider=self.provider, model=chunk.model or self.model)
        self.model = chunk.model or self.model
        self.request_id = chunk.id or self.request_id
        text = None
        for choice in chunk.choices or ():
            self.finish_reason = choice.finish_reason or self.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            for call in delta.tool_calls or ():
                self._add_tool_call(call)
            if delta.content:
                text = delta.content
        if (text or self.tool_calls) and self.first_token_ms is None:
            self.first_token_ms = (time.perf_counter() - started) * 1000
        if text:
            self.parts.append(text)
        return text

    def _add_tool_call(self, call: Any) -> None:
        # Streamed tool calls arrive in pieces keyed by index: the id and name once, the
        # arguments as fragments of a JSON string.
        merged = self.tool_calls.setdefault(
            call.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        merged["id"] = call.id or merged["id"]
        merged["type"] = call.type or merged["type"]
        if call.function is not None:
            merged["function"]["name"] += call.function.name or ""
            merged["function"]["arguments"] += call.function.arguments or ""

    def fields(self) -> dict[str, Any]:
        """The answer so far as ``ChatResponse`` fields (``usage`` as the provider reported it, or empty)."""
        usage = self.usage or Usage()
        return {
            "content": "".join(self.parts),
            "model": self.model or self.requested_model,
            "requested_model": self.requested_model,
            "provider": self.provider,
            "usage": usage,
            "provider_cost": usage.provider_cost,
            "finish_reason": self.finish_reason,
            "tool_calls": [self.tool_calls[i] for i in sorted(self.tool_calls)] or None,
            "time_to_first_token_ms": self.first_token_ms,
            "attempts": self.attempts,
            "request_id": self.request_id,
        }

    def response(self) -> ChatResponse:
        """The answer so far (``usage`` as the provider reported it, or empty when it did not)."""
        return ChatResponse(**self.fields())


#: ``on_finish(answer, how)`` -> the final ``ChatResponse`` (priced, recorded); ``how`` is
#: CONSUMED or ABANDONED. ``on_error(error, attempts, answer)``: ``answer`` is what arrived
#: before the failure (None when the request itself failed).
OnFinish = Callable[[StreamedAnswer, str], ChatResponse]
OnError = Callable[[errors.LLMError, int, StreamedAnswer | None], None]


@dataclass
class _Outcome:
    response: ChatResponse | None = None


class ChatStream:
    """Iterate for the text as it arrives; ``response`` is set once the stream has ended.

    Retries and fallback happen only before the first chunk: once text has been handed to
    the caller, a failure is raised to it (and recorded) rather than replayed. Use it as a
    context manager (or call ``close()``) to end it early; a stream dropped unfinished is
    ended and recorded when it is garbage-collected.
    """

    def __init__(
        self,
        open_stream: Callable[[], tuple[tuple[Any, Any], int]] | None,
        *,
        requested_model: str,
        started: float,
        on_finish: OnFinish,
        on_error: OnError,
    ):
        self._outcome = _Outcome()
        self._iterator: Iterator[str] | None = None
        if open_stream is not None:
            # A module-level generator that holds the outcome, not this object: dropping the
            # stream drops the generator at once (no reference cycle to wait for), which runs
            # its finaliser and records the call.
            self._iterator = _generate(open_stream, requested_model, started, on_finish, on_error, self._outcome)

    @classmethod
    def from_response(cls, response: ChatResponse) -> ChatStream:
        """A stream that replays a finished (cached) response as one delta."""
        stream = cls(None, requested_model=response.requested_model, started=0.0, on_finish=_never, on_error=_never)
        stream._outcome.response = response
        stream._iterator = iter([response.content] if response.content else [])
        return stream

    @property
    def response(self) -> ChatResponse | None:
        return self._outcome.response

    def __iter__(self) -> Iterator[str]:
        assert self._iterator is not None
        return self._iterator

    def __next__(self) -> str:
        return next(iter(self))

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading: the connection is closed and the call recorded with what arrived."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def text(self) -> str:
        """Consume the rest of the stream; the whole answer."""
        for _ in self:
            pass
        assert self.response is not None
        return self.response.content


def _generate(
    open_stream: Callable[[], tuple[tuple[Any, Any], int]],
    requested_model: str,
    started: float,
    on_finish: OnFinish,
    on_error: OnError,
    outcome: _Outcome,
) -> Iterator[str]:
    try:
        (stream, provider), attempts = open_stream()
    except errors.LLMError as error:
        on_error(error, getattr(error, "attempts", 0) or 0, None)
        raise
    answer = StreamedAnswer(requested_model=requested_model, provider=provider.name, attempts=attempts)
    try:
        with stream:
            for chunk in stream:
                text = answer.add(chunk, started)
                if text:
                    yield text
    except GeneratorExit:
        outcome.response = on_finish(answer, ABANDONED)
        raise
    except (errors.LLMError, openai.OpenAIError, httpx.HTTPError, ValueError, pydantic.ValidationError) as exc:
        failure = _stream_error(exc, provider.name, answer.model or requested_model)
        failure.attempts = attempts
        on_error(failure, attempts, answer)
        raise failure from None
    outcome.response = on_finish(answer, CONSUMED)


def _never(*args: object) -> Any:
    raise AssertionError("a replayed stream has no request to finish")


def _stream_error(exc: Exception, provider: str, model: str) -> errors.LLMError:
    if isinstance(exc, errors.LLMError):
        return exc
    if isinstance(exc, httpx.HTTPError):
        return errors.ProviderConnectionError(
            f"The stream broke off: {type(exc).__name__}", provider=provider, model=model
        )
    if isinstance(exc, openai.OpenAIError):
        return errors.from_openai(exc, provider=provider, model=model)
    # A chunk that is not JSON, or JSON that is not a chunk.
    detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
    return errors.InvalidResponse(
        f"The provider sent an invalid stream chunk ({detail})", provider=provider, model=model
    )
