"""``ChatStream``: text deltas of a streamed chat completion, then its usage and cost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai

from apps.llm import errors
from apps.llm.transport.responses import usage_from_sdk
from apps.llm.types import ChatResponse, Usage


class ChatStream:
    """Iterate for the text as it arrives; ``response`` is set once the stream is consumed.

    Retries and fallback happen only before the first chunk: once text has been handed to
    the caller, a failure is raised to it (and recorded) rather than replayed.
    """

    def __init__(
        self,
        open_stream: Callable[[], tuple[tuple[Any, Any], int]] | None,
        *,
        requested_model: str,
        started: float,
        on_finish: Callable[[ChatResponse], ChatResponse],
        on_error: Callable[[errors.LLMError, int], None],
    ):
        self._open = open_stream
        self._requested_model = requested_model
        self._started = started
        self._on_finish = on_finish
        self._on_error = on_error
        self._iterator: Iterator[str] | None = None
        self.response: ChatResponse | None = None

    @classmethod
    def from_response(cls, response: ChatResponse) -> ChatStream:
        """A stream that replays a finished (cached) response as one delta."""
        stream = cls(
            None,
            requested_model=response.requested_model,
            started=0.0,
            on_finish=lambda r: r,
            on_error=lambda e, a: None,
        )
        stream.response = response
        stream._iterator = iter([response.content] if response.content else [])
        return stream

    def __iter__(self) -> Iterator[str]:
        if self._iterator is None:
            self._iterator = self._generate()
        return self._iterator

    def __next__(self) -> str:
        return next(iter(self))

    def text(self) -> str:
        """Consume the rest of the stream; the whole answer."""
        for _ in self:
            pass
        assert self.response is not None
        return self.response.content

    def _generate(self) -> Iterator[str]:
        attempts = 0
        assert self._open is not None, "a replayed stream has its iterator already"
        try:
            (stream, provider), attempts = self._open()
        except errors.LLMError as error:
            self._on_error(error, getattr(error, "attempts", attempts))
            raise
        parts: list[str] = []
        usage: Usage | None = None
        model = finish_reason = request_id = None
        first_token_ms: float | None = None
        try:
            with stream:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = usage_from_sdk(chunk.usage)
                    model = chunk.model or model
                    request_id = chunk.id or request_id
                    for choice in chunk.choices:
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
                        text = choice.delta.content if choice.delta else None
                        if text:
                            if first_token_ms is None:
                                first_token_ms = (time.perf_counter() - self._started) * 1000
                            parts.append(text)
                            yield text
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            failure = _stream_error(exc, provider.name, model or self._requested_model)
            self._on_error(failure, attempts)
            raise failure from None
        usage = usage or Usage()
        self.response = self._on_finish(
            ChatResponse(
                content="".join(parts),
                model=model or self._requested_model,
                requested_model=self._requested_model,
                provider=provider.name,
                usage=usage,
                provider_cost=usage.provider_cost,
                finish_reason=finish_reason,
                time_to_first_token_ms=first_token_ms,
                attempts=attempts,
                request_id=request_id,
            )
        )


def _stream_error(exc: openai.OpenAIError | httpx.HTTPError, provider: str, model: str) -> errors.LLMError:
    if isinstance(exc, httpx.HTTPError):
        return errors.ProviderConnectionError(
            f"The stream broke off: {type(exc).__name__}", provider=provider, model=model
        )
    return errors.from_openai(exc, provider=provider, model=model)
