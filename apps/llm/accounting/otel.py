"""Each LLM call as an OpenTelemetry span, following the GenAI semantic conventions (optional).

``OpenTelemetryRecorder`` is a recorder (``records.Recorder``): the client hands it the
``CallRecord`` of every call (success, failure, refusal, cache hit) and it turns it into one
finished span. The span is built after the fact, from the record: it starts ``latency_ms``
before the record was made (``created_at``, when the call ended) and ends then, so the
recorder adds nothing to the call while it runs. It is a child of the span current in the
caller's context (a web request's, a task's), if any.

The span follows the OpenTelemetry GenAI client conventions (status: Development; the
``gen_ai.*`` names of open-telemetry/semantic-conventions-genai, where they moved after semconv
1.37, e.g. ``gen_ai.usage.cache_write.input_tokens`` rather than ``cache_creation``): name
``"{gen_ai.operation.name} {gen_ai.request.model}"``, kind CLIENT (INTERNAL when nothing left
the process: a cache hit, a refusal, the local embedding model), status ERROR on failure with
``error.type`` the client's exception class (``RateLimitError``, ``BudgetExceeded``, ...).
Our accounting is under ``llm.*``: the cost in USD as an exact decimal string, the cache
flag, the request-log row id (``llm.record_id``) to join a span to its ``LLMRequest``.
Never exported: the key fingerprint, prompt and answer text.

Export is on when ``settings.LLM["OTEL_ENDPOINT"]`` is set (this project: the
``OTEL_EXPORTER_OTLP_ENDPOINT`` environment variable): ``otel_recorder()`` then returns the
process's recorder, exporting in the background (a ``BatchSpanProcessor``) over OTLP/HTTP.
When it is not set, nothing of opentelemetry is imported: every import of it is inside the
functions that run only once export is on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apps.llm.accounting.records import REFUSED, SUCCESS, CallRecord
from apps.llm.conf import llm_settings
from apps.llm.errors import redact
from apps.llm.types import Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import Tracer, TracerProvider

#: The instrumentation scope of the spans.
SCOPE = "apps.llm"
#: ``CallRecord.endpoint`` -> ``gen_ai.operation.name`` (the conventions' well-known values).
OPERATIONS = {"chat": "chat", "chat.stream": "chat", "embeddings": "embeddings"}
#: Providers that run in this process: their calls are INTERNAL spans, not CLIENT ones.
IN_PROCESS_PROVIDERS = frozenset({"local"})
#: Characters of an error message kept as the span's status description.
STATUS_DESCRIPTION_LIMIT = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_USAGE = Usage()

#: A span attribute's value for a record; None leaves the attribute out. A mapping becomes one
#: attribute per key (``name.key``), for key/value data such as metadata.
AttributeOf = Callable[[CallRecord], Any]


def _decimal(value: Decimal | None) -> str | None:
    # As a string: a float would not carry a cost exactly (0.1 + 0.2 ...).
    return None if value is None else str(value)


def _usage(call: CallRecord) -> Usage:
    # A cache hit spent no tokens (its record keeps the cached answer's counts; its cost is 0).
    return _NO_USAGE if call.cached else call.usage


def _chat(call: CallRecord, value: Any) -> Any:
    """``value`` for a chat call, None (left out) for embeddings."""
    return value if OPERATIONS.get(call.endpoint) == "chat" else None


#: Span attribute -> its value for a record. Adding an attribute is one line here.
ATTRIBUTES: dict[str, AttributeOf] = {
    # -- the GenAI semantic conventions ---------------------------------------------------------
    "gen_ai.operation.name": lambda c: OPERATIONS.get(c.endpoint, c.endpoint),
    # This project's provider names (openai, openrouter, compatible, local); "openai" is also a
    # well-known value of the conventions.
    "gen_ai.provider.name": lambda c: c.provider or None,
    # The name before ``gen_ai.provider.name`` replaced it (semconv 1.37), still read by backends.
    "gen_ai.system": lambda c: c.provider or None,
    "gen_ai.request.model": lambda c: c.requested_model or None,
    "gen_ai.response.model": lambda c: (c.model or None) if c.status == SUCCESS else None,
    # On success ``request_id`` is the completion's id; on a failure it is the HTTP request id.
    "gen_ai.response.id": lambda c: c.request_id if c.status == SUCCESS else None,
    "gen_ai.request.stream": lambda c: _chat(c, c.endpoint == "chat.stream"),
    "gen_ai.usage.input_tokens": lambda c: _usage(c).prompt_tokens,
    "gen_ai.usage.output_tokens": lambda c: _chat(c, _usage(c).completion_tokens),
    "gen_ai.usage.cache_read.input_tokens": lambda c: _usage(c).cached_tokens or None,
    "gen_ai.usage.cache_write.input_tokens": lambda c: _usage(c).cache_write_tokens or None,
    "gen_ai.usage.reasoning.output_tokens": lambda c: _usage(c).reasoning_tokens or None,
    "gen_ai.response.time_to_first_chunk": lambda c: (
        None if c.time_to_first_token_ms is None else c.time_to_first_token_ms / 1000
    ),
    "error.type": lambda c: c.error_type or None,
    # -- this project's accounting ----------------------------------------------------------
    "llm.cost_usd": lambda c: _decimal(c.cost),
    "llm.provider_cost_usd": lambda c: _decimal(c.provider_cost),
    "llm.saved_cost_usd": lambda c: _decimal(c.saved_cost),
    "llm.cached": lambda c: c.cached,
    "llm.status": lambda c: c.status,
    "llm.endpoint": lambda c: c.endpoint,
    "llm.attempts": lambda c: c.attempts,
    "llm.usage_estimated": lambda c: c.usage_estimated,
    "llm.price_estimated": lambda c: c.price_estimated,
    "llm.feature": lambda c: c.feature or None,
    "llm.user_id": lambda c: c.user_id,
    "llm.tags": lambda c: list(c.tags) or None,
    "llm.metadata": lambda c: c.metadata or None,  # one llm.metadata.<key> attribute per key
    "llm.trace_id": lambda c: c.trace_id and str(c.trace_id),
    "llm.span_id": lambda c: c.span_id and str(c.span_id),
    "llm.record_id": lambda c: str(c.id),
    "llm.provider_request_id": lambda c: c.request_id if c.status != SUCCESS else None,
}


def span_attributes(call: CallRecord) -> dict[str, Any]:
    """The span attributes of a record (``ATTRIBUTES``), without the ones it has no value for."""
    attributes: dict[str, Any] = {}
    for name, value_of in ATTRIBUTES.items():
        value = value_of(call)
        if isinstance(value, Mapping):
            attributes.update({f"{name}.{key}": _scalar(item) for key, item in value.items() if item is not None})
        elif value is not None:
            attributes[name] = value
    return attributes


def _scalar(value: Any) -> Any:
    # OpenTelemetry attributes hold str, bool, int, float (or sequences of one of them).
    return value if isinstance(value, str | bool | int | float) else str(value)


def span_name(call: CallRecord) -> str:
    operation = OPERATIONS.get(call.endpoint, call.endpoint)
    return f"{operation} {call.requested_model}" if call.requested_model else operation


def _nanoseconds(moment: datetime) -> int:
    # Integer arithmetic: a float of nanoseconds since 1970 is off by up to a few hundred.
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


class OpenTelemetryRecorder:
    """Turns each ``CallRecord`` into a finished span of ``tracer_provider`` (or ``tracer``).

    Without either, the spans go to the global tracer provider (``opentelemetry.trace``).
    ``record()`` never raises; the client also guards every recorder.
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *, tracer: Tracer | None = None):
        from opentelemetry import trace

        self.tracer_provider = tracer_provider
        self.tracer: Tracer = tracer or trace.get_tracer(SCOPE, tracer_provider=tracer_provider)

    def record(self, call: CallRecord) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        end = _nanoseconds(call.created_at)
        start = end - round(call.latency_ms * 1_000_000)
        local = call.cached or call.status == REFUSED or call.provider in IN_PROCESS_PROVIDERS
        span = self.tracer.start_span(
            span_name(call),
            kind=SpanKind.INTERNAL if local else SpanKind.CLIENT,
            attributes=span_attributes(call),
            start_time=start,
        )
        if call.status != SUCCESS:
            # A refusal (a budget) is an error to the caller too: it raised.
            message = redact(call.error_message)[:STATUS_DESCRIPTION_LIMIT]
            span.set_status(Status(StatusCode.ERROR, message or call.error_type or None))
        span.end(end_time=end)

    # Deliberately no ``flush()``: the client flushes its recorders before it reads the
    # request log (``get_usage_stats``), which must not wait on a collector.
    def force_flush(self, timeout: float = 30.0) -> bool:
        """Export the spans still queued; False if that did not finish within ``timeout`` seconds."""
        force_flush = getattr(self.tracer_provider, "force_flush", None)
        return bool(force_flush(int(timeout * 1000))) if force_flush else True

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter (the provider also does this at exit)."""
        shutdown = getattr(self.tracer_provider, "shutdown", None)
        if shutdown:
            shutdown()


_recorders: dict[tuple[str, str], OpenTelemetryRecorder] = {}
_lock = threading.Lock()


def otel_recorder() -> OpenTelemetryRecorder | None:
    """The process's span exporter the ``LLM`` setting asks for; None (and no import of
    opentelemetry) unless ``OTEL_ENDPOINT`` is set."""
    config = llm_settings()
    if not config.otel_endpoint:
        return None
    key = (config.otel_endpoint, config.otel_service_name)
    with _lock:
        if key not in _recorders:
            _recorders[key] = OpenTelemetryRecorder(exporting_provider(*key))
        return _recorders[key]


def exporting_provider(endpoint: str, service_name: str) -> SdkTracerProvider:
    """A tracer provider exporting in batches over OTLP/HTTP to ``endpoint`` (a base URL).

    Headers, timeout and compression come from OpenTelemetry's own variables
    (``OTEL_EXPORTER_OTLP_HEADERS``, ...), which the exporter reads itself. The provider
    exports what is queued when the process exits.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    # OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: the traces path is appended (the OTLP spec).
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
