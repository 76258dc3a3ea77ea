"""The OpenAI simulator, driven by the real ``openai`` SDK over HTTP (nothing is monkeypatched)."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterator

import httpx
import openai
import pytest

from apps.llm.testing.simulator import CHAT, EMBEDDINGS, MODELS, OpenAISimulator, SimResponse
from config.env import BASE_DIR
from tests.recorded import chat_completions, embeddings, error_bodies, load_fixture, to_sim_response

HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]


def sdk_client(base_url: str, **kwargs) -> openai.OpenAI:
    options = {"api_key": "sk-test", "max_retries": 0, "timeout": 5} | kwargs
    return openai.OpenAI(base_url=base_url, **options)


@pytest.fixture
def client(sim: OpenAISimulator) -> Iterator[openai.OpenAI]:
    with sdk_client(sim.base_url) as c:
        yield c


def sse_data(text: str) -> list[dict]:
    return [
        json.loads(line[len("data: ") :])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


# -- chat: default answers ----------------------------------------------------------------------


def test_default_chat_is_deterministic_with_realistic_usage(client: openai.OpenAI, sim: OpenAISimulator):
    first = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    other = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Bye"}])

    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert "Hello there, how are you today?" in first.choices[0].message.content
    assert first.id != second.id
    assert first.model == "gpt-4o-mini"
    assert first.system_fingerprint
    assert first.choices[0].finish_reason == "stop"
    usage = first.usage
    # ~4 characters per token plus the per-message overhead.
    assert usage.prompt_tokens == 3 + 4 + math.ceil(len(HELLO[0]["content"]) / 4)
    assert usage.completion_tokens == math.ceil(len(first.choices[0].message.content) / 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert sim.count(CHAT) == 3


def test_usage_knobs_max_tokens_and_forced_tool_call():
    with OpenAISimulator(cached_fraction=0.5, reasoning_tokens=7) as sim, sdk_client(sim.base_url) as client:
        long_prompt = [{"role": "user", "content": "x" * 4000}]
        r = client.chat.completions.create(model="o4-mini", messages=long_prompt)
        assert r.usage.prompt_tokens_details.cached_tokens == r.usage.prompt_tokens // 2
        assert r.usage.completion_tokens_details.reasoning_tokens == 7

        sim.reasoning_tokens = 0
        cut = client.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=3)
        assert cut.choices[0].finish_reason == "length"
        assert cut.usage.completion_tokens == 3

        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        called = client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=tools, tool_choice="required")
        assert called.choices[0].finish_reason == "tool_calls"
        assert called.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_openrouter_base_url_adds_cost_from_the_catalog():
    catalog = load_fixture("openrouter-models-2026-01-29.json")
    pricing = next(m["pricing"] for m in catalog["data"] if m["id"] == "openai/gpt-4o-mini")
    with OpenAISimulator(openrouter_catalog=catalog) as sim, sdk_client(sim.openrouter_base_url) as client:
        r = client.chat.completions.create(model="openai/gpt-4o-mini", messages=HELLO)
        expected = r.usage.prompt_tokens * float(pricing["prompt"]) + r.usage.completion_tokens * float(
            pricing["completion"]
        )
        assert r.usage.cost == pytest.approx(expected)
        assert r.usage.model_extra["cost_details"]["upstream_inference_cost"] == pytest.approx(expected)
        assert sim.requests[0].path == "/api/v1/chat/completions"

        listed = httpx.get(f"{sim.openrouter_base_url}/models").json()
        assert listed == catalog
        # The SDK reads the OpenRouter catalog too (extra fields are kept).
        assert len(client.models.list().data) == len(catalog["data"])


# -- chat: recorded responses replayed ----------------------------------------------------------


def test_recorded_openrouter_completion_is_parsed_by_the_sdk(sim: OpenAISimulator):
    record = next(
        r
        for r in chat_completions(provider="openrouter", status=200, streaming=False)
        if r.body["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
    )
    sim.enqueue(CHAT, to_sim_response(record))
    with sdk_client(sim.openrouter_base_url) as client:
        completion = client.chat.completions.create(model="x-ai/grok-4", messages=HELLO)

    assert completion.id == record.body["id"]
    assert completion.model == record.body["model"]
    assert completion.usage.model_dump(exclude_unset=True) == record.body["usage"]
    assert completion.usage.prompt_tokens_details.cached_tokens == 682


def test_recorded_openai_completion_is_parsed_by_the_sdk(sim: OpenAISimulator, client: openai.OpenAI):
    record = next(
        r
        for r in chat_completions(provider="openai", status=200, streaming=False)
        if r.body["usage"].get("completion_tokens_details", {}).get("reasoning_tokens")
    )
    sim.enqueue("/v1/chat/completions", to_sim_response(record))
    completion = client.chat.completions.with_raw_response.create(model="o3-mini", messages=HELLO)

    parsed = completion.parse()
    assert parsed.usage.model_dump(exclude_unset=True) == record.body["usage"]
    assert parsed.choices[0].message.content == record.body["choices"][0]["message"]["content"]
    # Recorded headers come back (minus framing), e.g. the request id.
    assert completion.headers.get("x-request-id") == record.header("x-request-id")


def test_recorded_openai_stream_is_replayed(sim: OpenAISimulator, client: openai.OpenAI):
    record = next(
        r
        for r in chat_completions(provider="openai", streaming=True, file="openai-chat-responses-pydantic-ai-cassettes")
        if sse_data(r.body)[-1]["choices"] == [] and sse_data(r.body)[-1].get("usage")
    )
    sim.enqueue(CHAT, to_sim_response(record))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    recorded = sse_data(record.body)
    assert len(chunks) == len(recorded)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(d["choices"][0]["delta"].get("content") or "" for d in recorded if d["choices"])
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump(exclude_unset=True) == recorded[-1]["usage"]


def test_recorded_stream_with_mid_stream_error_is_served_as_recorded(sim: OpenAISimulator):
    record = next(r for r in chat_completions(provider="openrouter", streaming=True) if '"error":' in r.body)
    sim.enqueue(CHAT, to_sim_response(record), to_sim_response(record))

    raw = httpx.post(f"{sim.openrouter_base_url}/chat/completions", json={"model": "m", "messages": HELLO})
    assert raw.text == record.body  # byte for byte, ": OPENROUTER PROCESSING" comments included
    assert raw.headers["content-type"].startswith("text/event-stream")

    received = []
    with sdk_client(sim.openrouter_base_url) as client:
        stream = client.chat.completions.create(model="minimax/minimax-m2:free", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError, match="Token limit reached"):
            for chunk in stream:
                received.append(chunk)
    recorded = sse_data(record.body)
    error_at = next(i for i, d in enumerate(recorded) if "error" in d)
    # Every chunk before the error chunk reached the caller, in order.
    assert error_at > 0
    assert [c.model_dump(exclude_unset=True) for c in received] == recorded[:error_at]


def test_default_stream_ends_with_a_usage_chunk_when_asked(sim: OpenAISimulator, client: openai.OpenAI):
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert sim.requests[-1].json["stream_options"] == {"include_usage": True}

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == plain.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])

    without_usage = list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True))
    assert all(c.choices for c in without_usage)


def test_streams_are_chunked_and_json_has_content_length(sim: OpenAISimulator):
    with httpx.Client() as http:
        body = {"model": "gpt-4o-mini", "messages": HELLO}
        plain = http.post(f"{sim.base_url}/chat/completions", json=body)
        assert plain.headers["content-length"] == str(len(plain.content))
        streamed = http.post(f"{sim.base_url}/chat/completions", json=body | {"stream": True})
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.text.endswith("data: [DONE]\n\n")
        missing = http.get(f"{sim.base_url}/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
        assert missing.headers["content-length"] == str(len(missing.content))


# -- embeddings and models ------------------------------------------------------------------------


def test_embeddings_float_and_base64(client: openai.OpenAI, sim: OpenAISimulator):
    floats = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float")
    assert sim.requests[-1].json["encoding_format"] == "float"
    assert [len(d.embedding) for d in floats.data] == [1536, 1536]
    assert math.isclose(sum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-5)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == math.ceil(len("alpha") / 4) + math.ceil(len("beta") / 4)

    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = client.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert sim.requests[-1].json["encoding_format"] == "base64"
    assert decoded.data[0].embedding == floats.data[0].embedding

    assert len(client.embeddings.create(model="text-embedding-3-large", input="a").data[0].embedding) == 3072
    short = client.embeddings.create(model="text-embedding-3-large", input="a", dimensions=256)
    assert len(short.data[0].embedding) == 256
    assert sim.count(EMBEDDINGS) == 4


def test_recorded_base64_embedding_is_decoded_by_the_sdk(sim: OpenAISimulator, client: openai.OpenAI):
    record = embeddings(status=200, file="openai-embeddings-responses-pydantic-ai-cassettes")[0]
    sim.enqueue(EMBEDDINGS, to_sim_response(record))
    result = client.embeddings.create(model="text-embedding-3-small", input="hello")

    expected = array("f", base64.b64decode(record.body["data"][0]["embedding"])).tolist()
    assert result.data[0].embedding == expected
    assert result.usage.prompt_tokens == record.body["usage"]["prompt_tokens"]


def test_models_list_and_retrieve(client: openai.OpenAI, sim: OpenAISimulator):
    ids = [m.id for m in client.models.list().data]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"
    assert sim.count(MODELS) == 1
    # Without a configured catalog the OpenRouter-style URL lists models in OpenAI's format.
    assert httpx.get(f"{sim.openrouter_base_url}/models").json()["object"] == "list"


# -- errors --------------------------------------------------------------------------------------


def test_scripted_429_carries_retry_after(sim: OpenAISimulator, client: openai.OpenAI):
    sim.enqueue(CHAT, SimResponse.error(429, "Rate limit reached for gpt-4o-mini", retry_after=2))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = info.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.response.headers["retry-after-ms"] == "2000"
    assert error.code == "rate_limit_exceeded"
    assert error.body["message"] == "Rate limit reached for gpt-4o-mini"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(sim: OpenAISimulator, client: openai.OpenAI, status: int):
    sim.fail_next(CHAT, status=status)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert info.value.status_code == status
    assert info.value.type == "server_error"
    # One scripted failure only: the next call gets the default answer.
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices


def test_recorded_401_invalid_api_key(sim: OpenAISimulator, client: openai.OpenAI):
    record = next(r for r in chat_completions(status=401))
    sim.enqueue(CHAT, to_sim_response(record), SimResponse.error(401))
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert info.value.code == "invalid_api_key"
    assert info.value.body == record.body["error"]
    assert info.value.response.headers["cf-ray"] == record.header("cf-ray")
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert info.value.code == "invalid_api_key"


def test_recorded_context_length_exceeded(sim: OpenAISimulator, client: openai.OpenAI):
    quoted = next(e for e in error_bodies() if e.kind == "context_length_exceeded")
    sim.enqueue(CHAT, to_sim_response(quoted))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    assert "maximum context length" in info.value.message


def test_recorded_openrouter_429(sim: OpenAISimulator):
    record = next(r for r in chat_completions(provider="openrouter", status=429))
    sim.enqueue(CHAT, to_sim_response(record))
    with sdk_client(sim.openrouter_base_url) as client, pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="google/gemini-2.5-flash", messages=HELLO)
    assert info.value.body == record.body["error"]


def test_sdk_retries_are_visible_in_the_request_log(sim: OpenAISimulator):
    sim.fail_next(CHAT, 2, status=503, retry_after=0.01)
    with sdk_client(sim.base_url, max_retries=2) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.choices[0].message.content
    sent = sim.requests_for(CHAT)
    assert len(sent) == 3 and sim.pending(CHAT) == 0
    assert [r.headers.get("x-stainless-retry-count") for r in sent] == ["0", "1", "2"]
    assert all(r.json == sent[0].json for r in sent)


def test_authorization_header_is_logged_but_not_in_repr(sim: OpenAISimulator, client: openai.OpenAI):
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    request = sim.requests[0]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert "sk-test" not in repr(request)


def test_scripted_responses_are_fifo_per_route_and_reset_clears(sim: OpenAISimulator, client: openai.OpenAI):
    sim.enqueue(CHAT, SimResponse(json=_completion("one")), SimResponse(json=_completion("two")))
    sim.fail_next(EMBEDDINGS, status=500)
    assert client.chat.completions.create(model="m", messages=HELLO).choices[0].message.content == "one"
    assert client.chat.completions.create(model="m", messages=HELLO).choices[0].message.content == "two"
    assert client.chat.completions.create(model="m", messages=HELLO).choices[0].message.content.startswith("Simulated")
    assert sim.pending(EMBEDDINGS) == 1
    sim.reset()
    assert sim.pending(EMBEDDINGS) == 0 and sim.requests == [] and sim.counts == {}
    with pytest.raises(ValueError):
        SimResponse(json={}, body="x")


def test_scripted_event_list_raw_body_and_prefix_matching(sim: OpenAISimulator, client: openai.OpenAI):
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    sim.enqueue(CHAT, SimResponse(sse=[b": keep-alive comment\n\n", chunk, "[DONE]"]))
    stream = client.chat.completions.create(model="m", messages=HELLO, stream=True)
    assert [c.choices[0].delta.content for c in stream] == ["hi"]

    # A proxy's HTML error page: the SDK still maps the status.
    sim.enqueue(CHAT, SimResponse(status=502, body="<html>Bad gateway</html>", headers={"content-type": "text/html"}))
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=HELLO)
    assert info.value.status_code == 502

    # Scripts apply under /v1 and /api/v1, never to a path outside them (a wrong base URL).
    sim.enqueue(CHAT, SimResponse(json=_completion("scripted")))
    assert httpx.post(f"http://127.0.0.1:{sim.port}/chat/completions", json={}).status_code == 404
    assert sim.pending(CHAT) == 1


def test_stream_to_an_http10_client_ends_with_the_connection(sim: OpenAISimulator):
    body = json.dumps({"model": "m", "messages": HELLO, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.0\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, stream = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert stream.startswith(b"data: {") and stream.endswith(b"data: [DONE]\n\n")


def test_error_rate_is_seeded():
    def outcomes(seed: int) -> list[int]:
        with OpenAISimulator(error_rate=0.5, seed=seed) as sim, httpx.Client() as http:
            body = {"model": "gpt-4o-mini", "messages": HELLO}
            return [http.post(f"{sim.base_url}/chat/completions", json=body).status_code for _ in range(40)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert {200, 429, 500} == set(first)


def test_latency_knob_and_scripted_delay(sim: OpenAISimulator, client: openai.OpenAI):
    seen = []

    def latency(request) -> float:
        seen.append(request.route)
        return 0.05

    sim.latency = latency
    try:
        started = time.perf_counter()
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert time.perf_counter() - started >= 0.05
        assert seen == [CHAT]

        sim.enqueue(CHAT, SimResponse(json=_completion("fast"), delay=0))
        started = time.perf_counter()
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert time.perf_counter() - started < 0.05
    finally:
        sim.latency = 0.0


# -- transport -------------------------------------------------------------------------------------


def test_sdk_reuses_one_keep_alive_connection(sim: OpenAISimulator, client: openai.OpenAI):
    for i in range(20):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}])
    assert sim.count(CHAT) == 20
    assert sim.connections_accepted == 1


def test_concurrent_calls(sim: OpenAISimulator, client: openai.OpenAI):
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                content = f"thread {n} call {i}"
                r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
                assert r.choices[0].message.content.endswith(content)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sim.count(CHAT) == 200 and len(sim.requests) == 200
    assert sim.connections_accepted <= 8


def test_command_line_entry_point():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.llm.testing.simulator", "--port", str(port)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in banner
        with sdk_client(f"http://127.0.0.1:{port}/v1") as client:
            assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices
        assert proc.stdout.readline().startswith("POST /v1/chat/completions 200")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
        proc.stdout.close()


def _completion(content: str) -> dict:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
