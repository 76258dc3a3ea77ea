"""Sending a request with bounded retries and fallback: when to try again, and how long to wait."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import openai

from apps.llm.errors import BadRequestError, InvalidResponse, LLMError, RateLimitError, from_openai

if TYPE_CHECKING:
    from apps.llm.transport.providers import Provider

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    ``max_attempts`` counts tries on one provider (the first included); after them the
    client falls back to the next configured provider. ``total_timeout`` bounds the whole
    call across all providers and waits.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: A provider's Retry-After is honoured up to this many seconds.
    max_retry_after: float = 30.0
    total_timeout: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def should_retry(self, error: LLMError, attempt: int) -> bool:
        return error.retryable and attempt < self.max_attempts

    def delay(self, error: LLMError, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # Full jitter: spreads the retries of many clients hit by the same outage.
        return self.rng.uniform(0, ceiling)


NO_RETRIES = RetryPolicy(max_attempts=1)


def send[T](
    providers: Sequence[Provider],
    model: str,
    request: Callable[[Provider, str], T],
    *,
    policy: RetryPolicy,
    secrets: Callable[[], Iterable[str]] = tuple,
) -> tuple[tuple[T, Provider], int]:
    """``request`` on each provider in turn, retrying retryable errors with backoff.

    Returns ``((result, provider used), attempts)``. Bounded by ``policy.max_attempts`` per
    provider and ``policy.total_timeout`` overall. SDK errors become typed ``LLMError``s with
    the keys ``secrets()`` names scrubbed from their messages; a ``BadRequestError`` is raised at once (the same
    request fails everywhere).
    """
    deadline = time.monotonic() + policy.total_timeout
    attempts = 0
    error: LLMError | None = None
    for provider in providers:
        name = provider.model_name(model)
        for attempt in range(1, policy.max_attempts + 1):
            attempts += 1
            try:
                return (request(provider, name), provider), attempts
            except openai.OpenAIError as exc:
                error = from_openai(exc, provider=provider.name, model=name, secrets=secrets())
            except LLMError as exc:  # the answer arrived but was not a valid one
                error = exc
            except json.JSONDecodeError as exc:
                error = InvalidResponse(
                    f"The provider's answer is not valid JSON ({exc.msg})", provider=provider.name, model=name
                )
            error.attempts = attempts
            if isinstance(error, BadRequestError):
                raise error from None
            if not policy.should_retry(error, attempt):
                break  # next provider: its key, quota and health are its own
            delay = policy.delay(error, attempt)
            if time.monotonic() + delay > deadline:
                raise error from None
            logger.warning("LLM call failed (%s); retry %d in %.2fs", error, attempt, delay)
            time.sleep(delay)
        if time.monotonic() > deadline:
            break
    assert error is not None, "no provider to send to"
    raise error from None
