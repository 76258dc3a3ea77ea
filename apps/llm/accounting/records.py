"""What the client reports about every call it makes: the one definition of a call record.

The client hands one ``CallRecord`` per call (success, failure or cache hit) to each of its
recorders. The database request log is one recorder; ``UsageTally`` is the in-process one.
Recorders are the accounting's extension point: anything with ``record(call)`` (and,
optionally, ``flush()``) can be passed to ``LLMClient(recorders=[...])``.

Everything else that lists the fields of a call derives them from here: the request log's
columns (``LOG_COLUMNS`` and ``LOG_SOURCES``, which ``request_log.log_row`` stores), the admin's detail page
(``COLUMN_GROUPS``), and the tables of calls on the dashboard and their CSV (``LoggedCall``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from operator import attrgetter
from typing import Any, Protocol

from pydantic import BaseModel

from apps.llm.folding import Folded
from apps.llm.types import Usage, UsageStats

SUCCESS = "success"
ERROR = "error"
#: Refused by the platform before anything was sent (a budget): neither a success nor an error.
REFUSED = "refused"


# Not frozen: a frozen dataclass sets each of these fields through object.__setattr__, and a
# record is made on every call. Recorders share one record: none may change it.
@dataclass(slots=True)
class CallRecord:
    endpoint: str  # "chat", "chat.stream", "embeddings"
    provider: str
    requested_model: str
    model: str
    status: str
    usage: Usage = Usage()  # noqa: RUF009 (a frozen model: one shared empty usage is safe)
    cost: Decimal | None = None
    provider_cost: Decimal | None = None
    saved_cost: Decimal | None = None
    price_id: int | None = None
    #: How ``cost`` was computed: one line per price component (``CostBreakdown.lines()``).
    cost_breakdown: list[dict[str, str]] | None = None
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
    #: The tool calls of the answer, in OpenAI's shape (kept like the answer text).
    tool_calls: list[dict[str, Any]] | None = None
    #: The token counts were counted locally (the provider sent none: an abandoned stream,
    #: a server without usage in streams); the cost is priced from them.
    usage_estimated: bool = False
    #: The model had no price; the cost is a conservative estimate (``LLM_UNPRICED=estimate``).
    price_estimated: bool = False
    #: Labels the caller attached (``llm_context(tags=...)``, a call's ``tags=``), for grouping.
    tags: tuple[str, ...] = ()
    #: Key/value pairs the caller attached (``metadata=``): an order number, an experiment arm.
    metadata: dict[str, Any] | None = None
    #: The object the call was about (``llm_context(subject=...)``): its content type and key.
    subject_type_id: int | None = None
    subject_id: str | None = None
    #: The trace (its root span) and the span the call was made in (``llm_trace``).
    trace_id: uuid.UUID | None = None
    span_id: uuid.UUID | None = None
    # Idempotency: replaying a record can never create a second row.
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of_response(cls, response: BaseModel, **fields: Any) -> CallRecord:
        """A record of an API result (``ChatResponse``, ``EmbeddingResponse``): the fields they share, copied."""
        names, values = _shared_fields(type(response))
        return cls(**dict(zip(names, values(response), strict=True)) | fields)


@cache
def _shared_fields(response_type: type[BaseModel]) -> tuple[tuple[str, ...], Callable[[BaseModel], tuple]]:
    """The record fields a response type has too, and one getter of their values."""
    names = tuple(f.name for f in dataclass_fields(CallRecord) if f.name in response_type.model_fields)
    return names, attrgetter(*names)


#: Record fields the request log names otherwise.
_LOG_NAMES = {"requested_model": "model_requested", "response_text": "response"}
#: Token counts, flattened from ``CallRecord.usage`` into columns of their own (the cost the
#: provider reported is a field of the record itself).
USAGE_COLUMNS = tuple(name for name in Usage.model_fields if name != "provider_cost")
#: Every column of the request log, in record order.
LOG_COLUMNS: tuple[str, ...] = tuple(
    column
    for f in dataclass_fields(CallRecord)
    for column in (USAGE_COLUMNS if f.name == "usage" else (_LOG_NAMES.get(f.name, f.name),))
)


#: Where each log column's value is in a record: an attribute, or ``usage.<count>``.
LOG_SOURCES: dict[str, str] = {
    column: source
    for f in dataclass_fields(CallRecord)
    for column, source in (
        [(name, f"usage.{name}") for name in USAGE_COLUMNS]
        if f.name == "usage"
        else [(_LOG_NAMES.get(f.name, f.name), f.name)]
    )
}


def log_values(columns: tuple[str, ...]) -> Callable[[CallRecord], tuple[Any, ...]]:
    """A function giving a record's values of ``columns``, in that order (one C-level attrgetter)."""
    getter = attrgetter(*(LOG_SOURCES[column] for column in columns))
    return (lambda call: (getter(call),)) if len(columns) == 1 else getter


#: The request-log columns as a person reads a call (the admin's detail page); every column once.
COLUMN_GROUPS: dict[str, tuple[str, ...]] = {
    "Call": (
        "id",
        "created_at",
        "endpoint",
        "status",
        "provider",
        "model_requested",
        "model",
        "request_id",
        "user_id",
        "feature",
        "key_fingerprint",
    ),
    "Error": ("error_type", "error_message"),
    "Tokens": (
        "prompt_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "audio_tokens",
        "cached_audio_tokens",
        "image_tokens",
        "input_images",
        "completion_tokens",
        "reasoning_tokens",
        "output_audio_tokens",
        "output_image_tokens",
        "total_tokens",
        "web_search_requests",
    ),
    "Cost": (
        "cost",
        "cost_breakdown",
        "provider_cost",
        "saved_cost",
        "price_id",
        "price_estimated",
        "usage_estimated",
        "cached",
        "cache_key",
    ),
    "Attribution": ("tags", "metadata", "subject_type_id", "subject_id", "trace_id", "span_id"),
    "Timing": ("latency_ms", "time_to_first_token_ms", "attempts"),
    "Prompt and answer": ("prompt", "response", "tool_calls"),
}


@dataclass(frozen=True)
class LoggedCall:
    """A call as lists show it (the dashboard's tables and their CSV): a row of the log without its text."""

    id: uuid.UUID
    created_at: datetime
    provider: str
    model: str
    status: str
    feature: str
    user_id: int | None
    total_tokens: int
    cost: Decimal | None
    latency_ms: float
    error_type: str
    error_message: str


#: The request-log columns of a ``LoggedCall``.
SUMMARY_COLUMNS = tuple(f.name for f in dataclass_fields(LoggedCall))


class Recorder(Protocol):
    def record(self, call: CallRecord) -> None: ...


#: What the tally keeps of a call until it is folded in: (status, cached, tokens, cost, model).
_Summary = tuple[str, bool, int, Decimal | None, str]


@dataclass
class _Totals:
    requests: int = 0
    failures: int = 0
    refusals: int = 0
    cache_hits: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    models: set[str] = field(default_factory=set)

    def add(self, call: _Summary) -> _Totals:
        status, cached, tokens, cost, model = call
        self.requests += 1
        self.failures += status == ERROR
        self.refusals += status == REFUSED
        self.cache_hits += cached
        self.tokens += 0 if cached else tokens  # a hit spent no tokens
        self.cost += cost or Decimal(0)
        self.models.add(model)
        return self


class UsageTally:
    """Totals of the calls made by one client in this process (recording takes no lock)."""

    def __init__(self) -> None:
        # A small summary per call, folded every few hundred: holding the records themselves
        # (their usage, cost lines, prompts) kept thousands of objects alive for the garbage
        # collector to walk, and made its full collections more frequent.
        self._calls: Folded[_Summary, _Totals] = Folded(_Totals(), _Totals.add, limit=256)

    def record(self, call: CallRecord) -> None:
        self._calls.add(
            (call.status, call.cached, call.usage.total_tokens, call.cost, call.model or call.requested_model)
        )

    def stats(self) -> UsageStats:
        return self._calls.read(
            lambda totals: UsageStats.of_counts(
                requests=totals.requests,
                failures=totals.failures,
                refusals=totals.refusals,
                cache_hits=totals.cache_hits,
                total_tokens=totals.tokens,
                total_cost=totals.cost,
                models_used=sorted(totals.models),
            )
        )
