"""Calls exported as OpenTelemetry spans: real calls through the client to the loopback simulator,
spans read from the SDK's in-memory exporter, and once over OTLP/HTTP to a loopback receiver."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError

from apps.llm import errors
from apps.llm.accounting.otel import OpenTelemetryRecorder, otel_recorder, span_attributes
from apps.llm.accounting.records import CallRecord
from apps.llm.testing.simulator import CHAT
from config.env import BASE_DIR, Env
from tests.conftest import SIM_KEY

pytestmark = pytest.mark.django_db

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def client(make_client, sim, provider):
    return make_client(sim, recorders=[OpenTelemetryRecorder(provider)])


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    exporter.clear()
    return span


def assert_no_secret(span: ReadableSpan, client) -> None:
    exported = " ".join(str(v) for v in [*(span.attributes or {}).values(), span.status.description])
    fingerprint = client.providers["openai"].key_fingerprint
    assert SIM_KEY not in exported and (not fingerprint or fingerprint not in exported)
    assert not any("fingerprint" in name or "key" in name for name in span.attributes or {})


def test_a_chat_call_is_a_client_span_with_the_genai_attributes(client, provider, exporter):
    tracer = provider.get_tracer("test")
    before = time.time_ns()
    with tracer.start_as_current_span("support request") as outer:
        r = client.chat_completion(messages=HELLO, model="gpt-4o-mini", feature="support.reply")
    after = time.time_ns()

    span = next(s for s in exporter.get_finished_spans() if s.name != "support request")
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "apps.llm"
    # A child of the span current where the call was made.
    assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
    assert span.context.trace_id == outer.get_span_context().trace_id

    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == r.model
    assert a["gen_ai.response.id"] == r.request_id and r.request_id
    assert a["gen_ai.request.stream"] is False
    assert a["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens > 0
    assert a["gen_ai.usage.output_tokens"] == r.usage.completion_tokens > 0
    # Our cost: the exact decimal, as a string.
    assert isinstance(r.cost, Decimal) and r.cost > 0
    assert a["llm.cost_usd"] == str(r.cost) and Decimal(a["llm.cost_usd"]) == r.cost
    assert a["llm.cached"] is False and a["llm.status"] == "success" and a["llm.attempts"] == 1
    assert a["llm.feature"] == "support.reply" and a["llm.endpoint"] == "chat"
    assert "error.type" not in a and "llm.saved_cost_usd" not in a
    assert_no_secret(span, client)

    # The span covers the call: it lasts the call's latency and ends within the test's clock reading.
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time - span.start_time == round(r.latency_ms * 1_000_000)
    assert before - 1000 <= span.start_time <= span.end_time <= after + 1000  # the record keeps microseconds


def test_the_span_is_the_record_s_own_time_and_row(provider, exporter):
    record = CallRecord(
        endpoint="chat", provider="openai", requested_model="gpt-4o-mini", model="gpt-4o-mini", status="success",
        latency_ms=1234.5,
    )  # fmt: skip
    OpenTelemetryRecorder(provider).record(record)
    span = only_span(exporter)
    end = int(record.created_at.timestamp()) * 10**9 + record.created_at.microsecond * 1000
    assert span.end_time == end and span.start_time == end - 1_234_500_000
    assert span.attributes is not None and span.attributes["llm.record_id"] == str(record.id)
    # No price known: no cost attribute rather than a made-up 0.
    assert "llm.cost_usd" not in span.attributes


def test_a_failed_call_is_an_error_span_with_its_error_type_and_no_key(client, sim, exporter):
    sim.fail_next(CHAT, 1, status=401, message=f"Incorrect API key provided: {SIM_KEY}")
    with pytest.raises(errors.AuthenticationError):
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")

    span = only_span(exporter)
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description and "[redacted]" in span.status.description
    a = dict(span.attributes or {})
    assert a["error.type"] == "AuthenticationError" and a["llm.status"] == "error"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    # Nothing was answered: no response model or id, no tokens spent.
    assert "gen_ai.response.model" not in a and "gen_ai.response.id" not in a
    assert a["gen_ai.usage.input_tokens"] == 0 and a["gen_ai.usage.output_tokens"] == 0
    assert_no_secret(span, client)


def test_a_cache_hit_is_an_internal_span_that_spent_nothing(client, sim, exporter):
    first = client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    only_span(exporter)
    hit = client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert hit.cached and sim.count(CHAT) == 1

    span = only_span(exporter)
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    a = dict(span.attributes or {})
    assert a["llm.cached"] is True and a["llm.cost_usd"] == "0"
    assert first.cost is not None and a["llm.saved_cost_usd"] == str(first.cost)
    assert a["gen_ai.usage.input_tokens"] == 0 and a["gen_ai.usage.output_tokens"] == 0
    assert a["gen_ai.response.model"] == first.model


def test_a_streamed_chat_has_stream_and_time_to_first_chunk(client, exporter):
    stream = client.chat_completion(messages=HELLO, model="gpt-4o-mini", stream=True)
    assert list(stream)
    r = stream.response

    span = only_span(exporter)
    a = dict(span.attributes or {})
    assert span.name == "chat gpt-4o-mini" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.stream"] is True and a["llm.endpoint"] == "chat.stream"
    assert r.time_to_first_token_ms is not None
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(r.time_to_first_token_ms / 1000)
    assert a["gen_ai.usage.output_tokens"] == r.usage.completion_tokens > 0


def test_an_embedding_call_is_an_embeddings_span(client, exporter):
    r = client.generate_embedding(["first text", "second text"], model="text-embedding-3-small")

    span = only_span(exporter)
    assert span.name == "embeddings text-embedding-3-small" and span.kind is SpanKind.CLIENT
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "embeddings" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "text-embedding-3-small" and a["gen_ai.response.model"] == r.model
    assert a["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens > 0
    # Chat-only attributes are left out.
    assert "gen_ai.usage.output_tokens" not in a and "gen_ai.request.stream" not in a
    assert r.cost is not None and a["llm.cost_usd"] == str(r.cost)


def test_key_value_attributes_become_one_attribute_per_key(monkeypatch):
    from apps.llm.accounting import otel

    monkeypatch.setitem(otel.ATTRIBUTES, "llm.metadata", lambda c: {"order": 42, "arm": "b", "at": Decimal("1.5")})
    record = CallRecord(endpoint="chat", provider="openai", requested_model="m", model="m", status="success")
    a = span_attributes(record)
    assert a["llm.metadata.order"] == 42 and a["llm.metadata.arm"] == "b" and a["llm.metadata.at"] == "1.5"


# -- configuration: off by default, on with an endpoint -------------------------------------------


def test_off_without_an_endpoint_and_opentelemetry_never_imported():
    # A fresh interpreter: this one has imported opentelemetry for the tests above.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # Empty counts as unset, and wins over a developer's .env file.
    env |= {"DJANGO_ENV": "test", "DJANGO_SETTINGS_MODULE": "config.settings", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    script = (
        "import sys, django; django.setup()\n"
        "import apps.llm.client\n"
        "from apps.llm.accounting.otel import otel_recorder\n"
        "assert otel_recorder() is None\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')\n"
        "print('loaded:', loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded: []"


def test_the_endpoint_comes_from_otel_exporter_otlp_endpoint():
    env = Env(_env_file=None, django_env="test", otel_exporter_otlp_endpoint="http://collector:4318")
    assert env.llm["OTEL_ENDPOINT"] == "http://collector:4318"
    assert Env(_env_file=None, django_env="test").llm["OTEL_ENDPOINT"] is None
    with pytest.raises(ValidationError, match="otel_exporter_otlp_endpoint"):
        Env(_env_file=None, django_env="test", otel_exporter_otlp_endpoint="collector:4318")


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector's traces endpoint: keeps each request's path and body."""

    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_with_an_endpoint_calls_are_exported_over_otlp_http(settings, collector, make_client, sim):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    host, port = collector.server_address[:2]
    settings.LLM = {**settings.LLM, "OTEL_ENDPOINT": f"http://{host}:{port}/", "OTEL_SERVICE_NAME": "otel-test"}
    recorder = otel_recorder()
    assert isinstance(recorder, OpenTelemetryRecorder) and otel_recorder() is recorder  # one per process
    try:
        client = make_client(sim, recorders=[recorder])
        r = client.chat_completion(messages=HELLO, model="gpt-4o-mini")
        assert recorder.force_flush(timeout=10)
    finally:
        recorder.shutdown()

    ((path, body),) = collector.received  # type: ignore[attr-defined]
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
    assert resource["service.name"] == "otel-test"
    ((span,),) = [scope.spans for scope in resource_spans.scope_spans]
    assert span.name == "chat gpt-4o-mini"
    attributes = {kv.key: kv.value for kv in span.attributes}
    assert attributes["llm.cost_usd"].string_value == str(r.cost)
    assert attributes["gen_ai.usage.input_tokens"].int_value == r.usage.prompt_tokens
