"""What the client reports about every call it makes, and an in-process tally of it.

The client hands one ``CallRecord`` per call (success, failure or cache hit) to each of its
recorders. The database request log is one recorder; ``UsageTally`` is the in-process one.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Protocol

from apps.llm.types import Usage, UsageStats

SUCCESS = "success"
ERROR = "error"


@dataclass(frozen=True)
class CallRecord:
    endpoint: str  # "chat", "chat.stream", "embeddings"
    provider: str
    requested_model: str
    model: str
    status: str
    usage: Usage = Usage()
    cost: Decimal | None = None
    provider_cost: Decimal | None = None
    saved_cost: Decimal | None = None
    price_id: int | None = None
    cached: bool = False
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    attempts: int = 0
    cache_key: str = ""
    error_type: str = ""
    error_message: str = ""
    key_fingerprint: str = ""
    request_id: str | None = None
    user_id: int | None = None
    feature: str = ""
    prompt: object = None
    response_text: str | None = None
    # Idempotency: replaying a record can never create a second row.
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class Recorder(Protocol):
    def record(self, call: CallRecord) -> None: ...


class UsageTally:
    """Totals of the calls made by one client in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = UsageStats()
        self._models: set[str] = set()

    def record(self, call: CallRecord) -> None:
        with self._lock:
            s = self._stats
            self._models.add(call.model or call.requested_model)
            hits = s.cache_hits + (1 if call.cached else 0)
            misses = s.cache_misses + (0 if call.cached or call.status != SUCCESS else 1)
            self._stats = UsageStats(
                total_requests=s.total_requests + 1,
                total_tokens=s.total_tokens + call.usage.total_tokens * (not call.cached),
                total_cost=s.total_cost + (call.cost or Decimal(0)),
                cache_hits=hits,
                cache_misses=misses,
                cache_hit_rate=hits / (hits + misses) if hits + misses else 0.0,
                models_used=sorted(self._models),
                errors=s.errors + (call.status != SUCCESS),
            )

    def stats(self) -> UsageStats:
        with self._lock:
            return self._stats
