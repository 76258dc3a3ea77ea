"""When and how long to wait before trying a failed request again."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from apps.llm.errors import LLMError, RateLimitError


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
