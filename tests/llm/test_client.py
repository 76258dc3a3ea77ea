"""LLMClient end to end: the real `openai` SDK over HTTP to the loopback simulator."""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import formatdate

import pytest
from django.db import connection

from apps.llm import errors
from apps.llm.client import LLMClient
from apps.llm.costs import calculate_chat_cost
from apps.llm.testing.simulator import CHAT, EMBEDDINGS, OpenAISimulator, SimResponse
from apps.llm.transport.embeddings import EmbeddingBatcher, RequestLimits
from apps.llm.transport.retry import RetryPolicy
from apps.llm.types import ChatResponse
from tests.recorded import chat_completions, error_bodies, to_sim_response

pytestmark = pytest.mark.django_db

KEY_OPENAI = "sk-proj-" + "A1b2C3d4" * 5
KEY_OPENROUTER = "sk-or-v1-" + "e5F6g7H8" * 6
HELLO = [{"role": "user", "content": "Hello"}]
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, total_timeout=30)


@pytest.fixture
def other_sim(make_sim) -> OpenAISimulator:
    return make_sim()


@pytest.fixture
def make_client(make_client):
    """The shared factory (tests/conftest.py), retrying fast unless a test gives its own policy."""
    return functools.partial(make_client, retry=FAST_RETRY)


def openai_client(make_client, sim, **kwargs) -> LLMClient:
    return make_client(apikey_openai=KEY_OPENAI, openai_base_url=sim.base_url, **kwargs)


def openrouter_client(make_client, sim, **kwargs) -> LLMClient:
    return make_client(apikey_openrouter=KEY_OPENROUTER, openrouter_base_url=sim.openrouter_base_url, **kwargs)


# -- responses, typed and as a mapping ------------------------------------------------------


def test_chat_completion_typed_and_mapping_access(make_client, sim):
    client = openai_client(make_client, sim)
    r = client.chat_completion(messages=HELLO, model="openai/gpt-4o-mini")
    assert isinstance(r, ChatResponse)
    assert r.content and r["content"] == r.content
    assert r.provider == "openai" and r.model == "gpt-4o-mini" and r.requested_model == "openai/gpt-4o-mini"
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    expected = calculate_chat_cost(
        "gpt-4o-mini", r.usage.prompt_tokens, r.usage.completion_tokens, client.models_cache, provider="openai"
    )
    assert isinstance(r.cost, Decimal) and r.cost == expected > 0
    assert r.get("cost", 0) == r.cost and r["usage"] is r.usage and r.cached is False
    assert r.get("no_such_field", "default") == "default"
    with pytest.raises(KeyError):
        r["no_such_field"]
    # The SDK sent the provider's own model name, and no retries of its own.
    (request,) = sim.requests_for(CHAT)
    assert request.json["model"] == "gpt-4o-mini"
    assert request.headers["authorization"] == f"Bearer {KEY_OPENAI}"


def test_recorded_openrouter_response_is_priced_from_the_served_canonical_slug(make_client, sim):
    record = next(
        r
        for r in chat_completions(provider="openrouter", status=200, streaming=False)
        if r.body["model"] == "anthropic/claude-4.5-sonnet-20250929" and r.body["usage"].get("cost")
    )
    sim.enqueue(CHAT, to_sim_response(record))
    client = openrouter_client(make_client, sim)
    r = client.chat_completion(messages=HELLO, model="anthropic/claude-sonnet-4.5")
    usage = record.body["usage"]
    assert r.provider == "openrouter" and r.model == "anthropic/claude-4.5-sonnet-20250929"
    assert r.usage.prompt_tokens == usage["prompt_tokens"]
    assert r.provider_cost == Decimal(str(usage["cost"]))
    assert r.cost is not None and r.cost > 0
    # OpenRouter is asked to report its own charge.
    assert sim.requests_for(CHAT)[0].json["usage"] == {"include": True}


def test_unknown_model_has_no_cost_and_a_warning(make_client, sim, caplog):
    client = openai_client(make_client, sim)
    with caplog.at_level(logging.WARNING, logger="apps.llm.client"):
        r = client.chat_completion(messages=HELLO, model="gpt-nonexistent-9")
    assert r.cost is None and r.get("cost", 0) is None
    assert "No price known for model 'gpt-nonexistent-9'" in caplog.text


def test_estimate_cost_uses_the_price_table(make_client, sim):
    client = openai_client(make_client, sim)
    estimate = client.estimate_cost(model="openai/gpt-4o-mini", input_tokens=100, output_tokens=50)
    assert estimate == calculate_chat_cost("gpt-4o-mini", 100, 50, client.models_cache, provider="openai")
    assert isinstance(estimate, Decimal) and estimate > 0


# -- providers ------------------------------------------------------------------------------


def test_no_provider_is_a_clear_error_at_the_call_not_at_construction(make_client):
    client = make_client()
    with pytest.raises(errors.NoProviderConfigured) as excinfo:
        client.chat_completion(messages=HELLO)
    message = str(excinfo.value)
    assert all(name in message for name in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "LLM_BASE_URL"))
    assert isinstance(excinfo.value, errors.LLMError)


def test_openrouter_is_primary_and_provider_can_be_chosen_per_call(make_client, sim, other_sim):
    client = make_client(
        apikey_openrouter=KEY_OPENROUTER,
        openrouter_base_url=sim.openrouter_base_url,
        apikey_openai=KEY_OPENAI,
        openai_base_url=other_sim.base_url,
    )
    assert client.get_client_info()["primary_provider"] == "openrouter"
    assert client.chat_completion(messages=HELLO, model="gpt-4o-mini").provider == "openrouter"
    assert sim.requests_for(CHAT)[0].json["model"] == "openai/gpt-4o-mini"
    r = client.chat_completion(messages=HELLO, model="openai/gpt-4o-mini", provider="openai")
    assert r.provider == "openai" and other_sim.requests_for(CHAT)[0].json["model"] == "gpt-4o-mini"
    with pytest.raises(errors.ConfigurationError, match="'compatible' is not configured"):
        client.chat_completion(messages=HELLO, provider="compatible")


def test_openai_compatible_server_without_a_key(make_client, sim):
    client = make_client(base_url=sim.base_url)
    r = client.chat_completion(messages=HELLO, model="llama3.1:8b")
    assert r.provider == "compatible" and r.model == "llama3.1:8b"
    assert sim.requests_for(CHAT)[0].json["model"] == "llama3.1:8b"


def test_client_info_never_contains_a_key(make_client, sim):
    client = make_client(
        apikey_openrouter=KEY_OPENROUTER,
        apikey_openai=KEY_OPENAI,
        openrouter_base_url=sim.openrouter_base_url,
        openai_base_url=sim.base_url,
    )
    info = client.get_client_info()
    text = repr(info) + repr(client.providers)
    assert KEY_OPENAI not in text and KEY_OPENROUTER not in text
    assert [p["name"] for p in info["providers"]] == ["openrouter", "openai"]
    assert all(len(p["key_fingerprint"]) == 12 for p in info["providers"])
    assert info["cache"]["max_size"] == 1000


def test_list_models(make_client, sim):
    client = openai_client(make_client, sim)
    models = client.list_models()
    assert "gpt-4o-mini" in models and models == sorted(models)
    with pytest.raises(errors.NoProviderConfigured):
        make_client().list_models()


# -- failures, retries and fallback ---------------------------------------------------------


def test_server_errors_are_retried_with_backoff_then_succeed(make_client, sim):
    sim.fail_next(CHAT, 2, status=500)
    client = openai_client(make_client, sim)
    r = client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert r.attempts == 3 and sim.count(CHAT) == 3


def test_retry_after_is_honoured(make_client, sim):
    sim.fail_next(CHAT, 1, status=429, retry_after=0.3)
    client = openai_client(make_client, sim)
    started = time.monotonic()
    r = client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert time.monotonic() - started >= 0.3
    assert r.attempts == 2


def test_retries_are_bounded_and_the_last_error_is_typed(make_client, sim):
    sim.fail_next(CHAT, 5, status=503)
    client = openai_client(make_client, sim)
    with pytest.raises(errors.ServerError) as excinfo:
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert sim.count(CHAT) == FAST_RETRY.max_attempts and excinfo.value.status_code == 503
    assert excinfo.value.attempts == 3


def test_total_time_is_bounded(make_client, sim):
    sim.fail_next(CHAT, 3, status=429, retry_after=5)
    client = openai_client(make_client, sim, retry=RetryPolicy(max_attempts=3, total_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(errors.RateLimitError) as excinfo:
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert time.monotonic() - started < 5  # it gave up instead of sleeping past the budget
    assert excinfo.value.retry_after == 5 and sim.count(CHAT) == 1


@pytest.mark.parametrize(("status", "error_type"), [(401, errors.AuthenticationError), (400, errors.BadRequestError)])
def test_client_errors_are_never_retried(make_client, sim, status, error_type):
    sim.fail_next(CHAT, 3, status=status, message=f"Incorrect API key provided: {KEY_OPENAI}")
    client = openai_client(make_client, sim)
    with pytest.raises(error_type) as excinfo:
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert sim.count(CHAT) == 1
    assert KEY_OPENAI not in str(excinfo.value) and "[redacted]" in str(excinfo.value)


def test_recorded_context_length_error_is_typed(make_client, sim):
    body = next(b for b in error_bodies() if b.body and "context_length_exceeded" in str(b.body))
    sim.enqueue(CHAT, to_sim_response(body))
    client = openai_client(make_client, sim)
    with pytest.raises(errors.ContextLengthExceeded):
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert sim.count(CHAT) == 1


def test_timeout_is_typed_and_retried(make_client, sim):
    sim.enqueue(CHAT, SimResponse(json=None, delay=1.0), SimResponse(json=None, delay=1.0))
    client = openai_client(
        make_client, sim, timeout=0.2, retry=RetryPolicy(max_attempts=2, base_delay=0.01, total_timeout=10)
    )
    with pytest.raises(errors.LLMTimeoutError) as excinfo:
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert excinfo.value.attempts == 2


def test_falls_back_to_the_next_provider(make_client, sim, other_sim):
    sim.fail_next(CHAT, 3, status=502)
    client = make_client(
        apikey_openrouter=KEY_OPENROUTER,
        openrouter_base_url=sim.openrouter_base_url,
        apikey_openai=KEY_OPENAI,
        openai_base_url=other_sim.base_url,
    )
    r = client.chat_completion(messages=HELLO, model="openai/gpt-4o-mini")
    assert r.provider == "openai" and r.attempts == 4
    assert sim.count(CHAT) == 3 and other_sim.count(CHAT) == 1
    # Models OpenAI does not serve are not sent there.
    sim.fail_next(CHAT, 3, status=502)
    with pytest.raises(errors.ServerError):
        client.chat_completion(messages=HELLO, model="anthropic/claude-sonnet-4.5")
    assert other_sim.count(CHAT) == 1


def test_an_account_problem_falls_back_without_retrying(make_client, sim, other_sim):
    sim.fail_next(CHAT, 1, status=402, message="This request requires more credits")
    client = make_client(
        apikey_openrouter=KEY_OPENROUTER,
        openrouter_base_url=sim.openrouter_base_url,
        apikey_openai=KEY_OPENAI,
        openai_base_url=other_sim.base_url,
    )
    assert client.chat_completion(messages=HELLO, model="gpt-4o-mini").provider == "openai"
    assert sim.count(CHAT) == 1


def test_failures_are_recorded(make_client, sim):
    sim.fail_next(CHAT, 3, status=500)
    client = openai_client(make_client, sim)
    with pytest.raises(errors.ServerError):
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    stats = client.session_stats()
    assert (stats.total_requests, stats.errors, stats.cache_misses) == (1, 1, 0)


# -- streaming ------------------------------------------------------------------------------


def test_streaming_yields_deltas_then_usage_and_cost(make_client, sim):
    client = openai_client(make_client, sim)
    stream = client.chat_completion(messages=HELLO, model="gpt-4o-mini", stream=True)
    deltas = list(stream)
    assert len(deltas) > 1
    r = stream.response
    assert r.content == "".join(deltas) and r.usage.completion_tokens > 0
    assert r.cost == calculate_chat_cost(
        "gpt-4o-mini", r.usage.prompt_tokens, r.usage.completion_tokens, client.models_cache, provider="openai"
    )
    assert r.time_to_first_token_ms is not None and r.time_to_first_token_ms <= r.latency_ms
    request = sim.requests_for(CHAT)[0].json
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    # The finished stream was cached: the same request again replays it without a call.
    again = client.chat_completion_stream(HELLO, "gpt-4o-mini")
    assert again.text() == r.content and again.response.cached and sim.count(CHAT) == 1


def test_recorded_openrouter_stream_with_usage(make_client, sim):
    record = next(
        r
        for r in chat_completions(provider="openrouter", status=200, streaming=True)
        if '"usage"' in r.body and '"error"' not in r.body
    )
    sim.enqueue(CHAT, to_sim_response(record))
    client = openrouter_client(make_client, sim)
    stream = client.chat_completion_stream(HELLO, record.request_body["model"])
    text = stream.text()
    assert text and stream.response.usage.total_tokens > 0


def test_error_inside_a_stream_is_typed_and_recorded(make_client, sim):
    record = next(
        r
        for r in chat_completions(provider="openrouter", status=200, streaming=True)
        if "Token limit reached" in r.body
    )
    sim.enqueue(CHAT, to_sim_response(record))
    client = openrouter_client(make_client, sim)
    stream = client.chat_completion_stream(HELLO, record.request_body["model"])
    with pytest.raises(errors.LLMError, match="Token limit reached"):
        stream.text()
    assert client.session_stats().errors == 1


# -- cache ----------------------------------------------------------------------------------


def test_cache_hit_costs_nothing_and_reports_the_saving(make_client, sim):
    client = openai_client(make_client, sim)
    first = client.chat_completion(messages=HELLO, model="gpt-4o-mini", temperature=0)
    second = client.chat_completion(messages=HELLO, model="gpt-4o-mini", temperature=0)
    assert sim.count(CHAT) == 1
    assert second.cached and second.cost == 0 and second.saved_cost == first.cost and second.content == first.content
    client.chat_completion(messages=HELLO, model="gpt-4o-mini", temperature=1)  # another answer
    client.chat_completion(messages=HELLO, model="gpt-4o-mini", temperature=0, cache=False)  # bypass
    assert sim.count(CHAT) == 3
    info = client.cache.get_cache_info()
    assert (info.hits, info.misses, info.hit_rate) == (1, 2, pytest.approx(1 / 3))


def test_file_cache_under_cache_dir_is_shared_between_clients(make_client, sim, tmp_path):
    a = openai_client(make_client, sim, cache_dir=tmp_path / "llm", cache_backend=None, max_cache_size=50)
    b = openai_client(make_client, sim, cache_dir=tmp_path / "llm", cache_backend=None)
    a.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert b.chat_completion(messages=HELLO, model="gpt-4o-mini").cached
    assert sim.count(CHAT) == 1 and a.cache.get_cache_info().size == 1


def test_eight_threads_hammering_one_client(make_client, sim):
    sim.latency = 0.05  # duplicates arrive while the first call is in flight
    client = openai_client(make_client, sim, recorders=[])  # the database log has its own tests
    barrier = threading.Barrier(8)
    failures = []

    def worker(n: int) -> list[str]:
        barrier.wait()
        out = []
        for i in range(10):
            try:
                out.append(
                    client.chat_completion(
                        messages=[{"role": "user", "content": f"question {i}"}], model="gpt-4o-mini"
                    ).content
                )
            except Exception as exc:
                failures.append(exc)
        connection.close()  # the price table may have been read from this thread
        return out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert failures == []
    assert sim.count(CHAT) == 10
    assert all(r == results[0] for r in results) and len(set(results[0])) == 10
    stats = client.session_stats()
    assert (stats.total_requests, stats.cache_hits, stats.cache_misses, stats.errors) == (80, 70, 10, 0)
    info = client.cache.get_cache_info()
    assert (info.hits, info.misses) == (70, 10)


# -- embeddings -----------------------------------------------------------------------------


def test_embedding_single_and_batch(make_client, sim):
    client = openai_client(make_client, sim)
    e = client.generate_embedding(text="The food was delicious", model="text-embedding-ada-002")
    assert len(e["embedding"]) == 1536 and e.embedding == e.embeddings[0]
    assert e.cost is not None and e.cost > 0 and e.usage.prompt_tokens > 0
    batch = client.generate_embedding(["one", "two", "three"], model="text-embedding-3-small")
    assert len(batch.embeddings) == 3 and batch.requests == 1
    single = client.generate_embedding("two", model="text-embedding-3-small")
    assert single.cached and single.embedding == batch.embeddings[1]


def test_embedding_batches_are_split_to_the_provider_limits(make_client, sim):
    client = openai_client(make_client, sim)
    client._embeddings = EmbeddingBatcher(
        client.tokenizer, RequestLimits(max_inputs=3, max_tokens=10_000, max_tokens_per_input=50)
    )
    texts = [f"sentence number {i}" for i in range(7)]
    e = client.generate_embedding(texts, model="text-embedding-3-small", cache=False)
    assert e.requests == 3 and [len(r.json["input"]) for r in sim.requests_for(EMBEDDINGS)] == [3, 3, 1]
    reference = client.generate_embedding(texts[5], model="text-embedding-3-small", cache=False)
    assert e.embeddings[5] == reference.embedding  # order kept across requests
    with pytest.raises(errors.ContextLengthExceeded, match="Input 1 has"):
        client.generate_embedding(["short", "word " * 100], model="text-embedding-3-small")


def test_local_embeddings_need_no_provider_and_cost_nothing(make_client):
    client = make_client()
    e = client.generate_embedding(["a cat sat on the mat", "hello"], model="local/all-minilm-l6-v2")
    assert e.provider == "local" and e.cost == 0 and len(e.embedding) == 384 and e.usage.prompt_tokens > 0


def test_retry_after_as_an_http_date_is_read(make_client, sim):
    # RFC 9110 allows Retry-After as a date (whole seconds): 3 s from now.
    when = formatdate(time.time() + 3, usegmt=True)
    sim.enqueue(CHAT, SimResponse.error(429, "Slow down", headers={"retry-after": when}))
    client = openai_client(make_client, sim, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(errors.RateLimitError) as excinfo:
        client.chat_completion(messages=HELLO, model="gpt-4o-mini")
    assert 1.5 <= excinfo.value.retry_after <= 3  # the date's distance, not the backoff schedule's
    assert RetryPolicy().delay(excinfo.value, 1) == excinfo.value.retry_after


def test_retry_after_forms():
    from apps.llm.errors import _retry_after

    class Response:
        def __init__(self, **headers):
            self.headers = headers

    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    clock = lambda: now  # noqa: E731
    assert _retry_after(Response(**{"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT"}), clock) == 30
    assert _retry_after(Response(**{"retry-after": "Wed, 21 Oct 2026 07:27:00 GMT"}), clock) == 0  # past: go
    assert _retry_after(Response(**{"retry-after": "7"}), clock) == 7
    assert _retry_after(Response(**{"retry-after-ms": "250", "retry-after": "1"}), clock) == 0.25
    assert _retry_after(Response(**{"retry-after": "soon"}), clock) is None
    assert _retry_after(Response(), clock) is None
