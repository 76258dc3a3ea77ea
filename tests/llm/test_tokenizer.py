"""Tokenizer: genuine encodings loaded offline, model resolution, the cookbook's message formula,
and prompt_tokens of real recorded OpenAI requests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import apps.llm.tokenizer as tokenizer_module
from apps.llm.tokenizer import IMAGE_TOKENS_ESTIMATE, IMAGE_TOKENS_LOW_DETAIL, EncodingInfo, Tokenizer, load_encoding
from config.env import BASE_DIR
from tests.helpers import FIXTURES

RECORDED = FIXTURES / "recorded" / "openai-chat-responses-pydantic-ai-cassettes.json"

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


# --- encodings --------------------------------------------------------------------------------


def test_genuine_token_ids():
    assert load_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert load_encoding("cl100k_base").encode("hello world") == [15339, 1917]


def test_count_tokens(tok):
    assert tok.count_tokens("Hello world", "gpt-4o-mini") == 2
    assert tok.count_tokens("", "gpt-4o") == 0
    assert tok.count_tokens("hello world", "gpt-4") == 2
    assert tok.count_tokens("antidisestablishmentarianism", "gpt-4o") == 6
    assert tok.count_tokens("お誕生日おめでとう", "gpt-4o") == 8
    assert tok.count_tokens("お誕生日おめでとう", "gpt-3.5-turbo") == 9


def test_special_token_text_is_counted_as_text(tok):
    text = "a user pasted <|endoftext|> and <|endofprompt|> into the chat"
    encoding = load_encoding("o200k_base")
    assert tok.count_tokens(text, "gpt-4o") == len(encoding.encode(text, disallowed_special=()))
    assert tok.count_tokens("<|endoftext|>", "gpt-4o") > 1  # not the single special token
    assert tok.count_messages_tokens([{"role": "user", "content": "<|endoftext|>"}], "gpt-4") > 0


def test_non_str_text_is_a_type_error(tok):
    with pytest.raises(TypeError):
        tok.count_tokens(None, "gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tok.encoding_for(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "model, encoding_name, estimate",
    [
        ("gpt-4o", "o200k_base", False),
        ("gpt-4o-mini", "o200k_base", False),
        ("gpt-4o-2024-08-06", "o200k_base", False),
        ("gpt-4o-mini-2024-07-18", "o200k_base", False),
        ("chatgpt-4o-latest", "o200k_base", False),
        ("gpt-4.1", "o200k_base", False),
        ("gpt-4.1-nano", "o200k_base", False),
        ("gpt-4.5-preview", "o200k_base", False),
        ("gpt-5", "o200k_base", False),
        ("gpt-5-mini", "o200k_base", False),
        ("gpt-5.4-mini", "o200k_base", False),
        ("o1", "o200k_base", False),
        ("o1-mini", "o200k_base", False),
        ("o3-mini-2025-01-31", "o200k_base", False),
        ("o4-mini", "o200k_base", False),
        ("GPT-4o", "o200k_base", False),
        ("openai/gpt-4o", "o200k_base", False),
        ("openai/gpt-4o-mini:free", "o200k_base", False),
        ("openai/o3-mini", "o200k_base", False),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base", False),
        ("gpt-4", "cl100k_base", False),
        ("gpt-4-0613", "cl100k_base", False),
        ("gpt-4-turbo", "cl100k_base", False),
        ("gpt-3.5-turbo", "cl100k_base", False),
        ("gpt-3.5-turbo-0125", "cl100k_base", False),
        ("openai/gpt-3.5-turbo", "cl100k_base", False),
        ("text-embedding-3-small", "cl100k_base", False),
        ("text-embedding-3-large", "cl100k_base", False),
        ("text-embedding-ada-002", "cl100k_base", False),
        ("openai/text-embedding-3-small", "cl100k_base", False),
        ("anthropic/claude-3.5-sonnet", "o200k_base", True),
        ("claude-3-5-sonnet-20241022", "o200k_base", True),
        ("google/gemini-2.5-flash", "o200k_base", True),
        ("meta-llama/llama-3.1-70b-instruct", "o200k_base", True),
        ("local/llama3", "o200k_base", True),
        ("llama3.1:8b", "o200k_base", True),
        ("openrouter/auto", "o200k_base", True),
        ("o30", "o200k_base", True),
        ("unknown-model", "o200k_base", True),
    ],
)
def test_model_resolution(tok, model, encoding_name, estimate):
    info = tok.encoding_for(model)
    assert isinstance(info, EncodingInfo)
    assert (info.encoding_name, info.is_estimate) == (encoding_name, estimate)
    assert tok.is_estimate(model) is estimate
    assert info.encoding is load_encoding(encoding_name)


def test_estimates_count_with_o200k(tok):
    text = "The quick brown fox jumps over the lazy dog."
    exact = tok.count_tokens(text, "gpt-4o")
    for model in ("anthropic/claude-sonnet-4", "google/gemini-2.5-pro", "meta-llama/llama-3-8b", "local/x"):
        assert tok.count_tokens(text, model) == exact


def test_resolution_is_memoized(tok, monkeypatch):
    calls = []
    original = tokenizer_module._resolve
    monkeypatch.setattr(tokenizer_module, "_resolve", lambda model: calls.append(model) or original(model))
    model = "openai/gpt-4o-2099-12-31-memo-test"
    first = tok.encoding_for(model)
    for _ in range(100):
        tok.count_tokens("hi", model)
        assert tok.encoding_for(model) is first
    tok.count_messages_tokens([{"role": "user", "content": "hi"}], model)
    assert calls == [model]


# --- chat messages ----------------------------------------------------------------------------

# The openai-cookbook "How to count tokens with tiktoken" example and the API's reported counts.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]
COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    "model, expected",
    [
        ("gpt-3.5-turbo-0613", 129),
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
        ("openai/gpt-4o-mini", 124),
    ],
)
def test_cookbook_example_messages(tok, model, expected):
    assert tok.count_messages_tokens(COOKBOOK_MESSAGES, model) == expected


@pytest.mark.parametrize(
    "model, expected", [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)]
)
def test_cookbook_example_with_tools(tok, model, expected):
    assert tok.count_messages_tokens(COOKBOOK_TOOL_MESSAGES, model, tools=COOKBOOK_TOOLS) == expected


def test_formula_for_a_single_message(tok):
    # 3 per message + "user" (1) + "Hello world" (2) + 3 for the reply priming.
    assert tok.count_messages_tokens([{"role": "user", "content": "Hello world"}], "gpt-4o") == 9
    # A name costs its tokens plus one.
    named = [{"role": "user", "name": "alice", "content": "Hello world"}]
    assert tok.count_messages_tokens(named, "gpt-4o") == 9 + tok.count_tokens("alice", "gpt-4o") + 1
    # Reasoning models prime the reply with one token less (see the recorded usage below).
    assert tok.count_messages_tokens([{"role": "user", "content": "Hello world"}], "o3-mini") == 8
    assert tok.count_messages_tokens([], "gpt-4o") == 3


def test_list_of_parts_counts_text_parts(tok):
    plain = [{"role": "user", "content": "Describe this picture in one sentence."}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "Describe this picture in one sentence."}]}]
    assert tok.count_messages_tokens(parts, "gpt-4o") == tok.count_messages_tokens(plain, "gpt-4o")

    two = [{"role": "user", "content": [{"type": "text", "text": "First part."}, {"type": "text", "text": "Second."}]}]
    expected = 3 + 1 + tok.count_tokens("First part.", "gpt-4o") + tok.count_tokens("Second.", "gpt-4o") + 3
    assert tok.count_messages_tokens(two, "gpt-4o") == expected


def test_image_and_audio_parts(tok):
    base = tok.count_messages_tokens([{"role": "user", "content": [{"type": "text", "text": "What is it?"}]}], "gpt-4o")

    def with_part(part: dict[str, Any]) -> int:
        content = [{"type": "text", "text": "What is it?"}, part]
        return tok.count_messages_tokens([{"role": "user", "content": content}], "gpt-4o")

    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    low = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "mp3"}}
    assert with_part(image) == base + IMAGE_TOKENS_ESTIMATE
    assert with_part(low) == base + IMAGE_TOKENS_LOW_DETAIL
    assert with_part(audio) == base  # not derivable from the request: counted as 0


def test_tools_and_tool_calls_add_tokens(tok):
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    without = tok.count_messages_tokens(messages, "gpt-4o")
    with_tools = tok.count_messages_tokens(messages, "gpt-4o", tools=COOKBOOK_TOOLS)
    assert with_tools > without + 30
    assert tok.count_messages_tokens(messages, "gpt-4o", tools=[]) == without
    # Built-in tools have no function definition to render.
    assert tok.count_messages_tokens(messages, "gpt-4o", tools=[{"type": "web_search"}]) == without

    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": '{"location":"Paris, France"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"}
    longer = tok.count_messages_tokens([*messages, call, result], "gpt-4o", tools=COOKBOOK_TOOLS)
    count = lambda text: tok.count_tokens(text, "gpt-4o")  # noqa: E731
    # Call and result: 2 x 3 per message, "assistant", the name twice, arguments, result, 6 overhead.
    expected = 6 + 1 + 2 * count("get_current_weather") + count('{"location":"Paris, France"}')
    expected += count("18 degrees, sunny") + 6
    assert longer - with_tools == expected
    # The call id is not part of the prompt.
    other_id = json.loads(json.dumps([call, result]).replace("call_1", "call_a_much_longer_identifier_0123456789"))
    assert tok.count_messages_tokens([*messages, *other_id], "gpt-4o", tools=COOKBOOK_TOOLS) == longer


def test_nested_tool_schema_is_rendered(tok):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "create_order",
                "description": "Create an order.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                                "required": ["sku"],
                            },
                        },
                        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "priority": {"type": "integer", "enum": [1, 2, 3]},
                    },
                },
            },
        }
    ]
    rendered = tokenizer_module._render_tools(tools)
    assert rendered is not None
    assert "type create_order = (_: {" in rendered
    assert "items?: {\n  sku: string,\n  qty?: number,\n}[]," in rendered
    assert "note?: string | null," in rendered
    assert "priority?: 1 | 2 | 3," in rendered
    messages = [{"role": "user", "content": "Order two apples"}]
    assert tok.count_messages_tokens(messages, "gpt-4o", tools=tools) > tok.count_messages_tokens(messages, "gpt-4o")


# --- recorded API usage -------------------------------------------------------------------------

# Known, measured differences (recorded prompt_tokens minus our count) for plain-text requests:
# the search-preview models and o1-mini account for the prompt differently from every other model.
KNOWN_DEVIATIONS = {"gpt-4o-search-preview": -11, "o1-mini": 8}
# With tools, 9 of the 15 recorded requests match exactly; the other 6 come out 1 token high, and
# they are exactly the ones whose function parameters carry no descriptions.
TOOLS_TOLERANCE = 1


def _recorded_usage(response: dict[str, Any]) -> dict[str, Any] | None:
    if response["status"] != 200:
        return None
    if response["body_kind"] == "json":
        return response["body"].get("usage")
    if response["body_kind"] == "sse_text":  # stream_options.include_usage: the last chunk
        usage = None
        for line in response["body"].splitlines():
            if line.startswith("data: {"):
                usage = json.loads(line[len("data: ") :]).get("usage") or usage
        return usage
    return None


def _unmeasurable(body: dict[str, Any]) -> str | None:
    """Why a request's prompt_tokens cannot be reproduced from the request, if so."""
    if "truncated by collector" in json.dumps(body):
        return "request text truncated by the collector"
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list) and any(part.get("type") != "text" for part in content):
            return "image, audio or file input: cost not derivable from the request"
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return "response_format json_schema is not counted"
    return None


def _recorded_chat_requests() -> list[tuple[str, dict[str, Any], int]]:
    data = json.loads(RECORDED.read_text(encoding="utf-8"))
    requests = []
    for record in data["records"]:
        body = record["request"].get("body")
        if not record["request"]["uri"].endswith("/chat/completions") or not isinstance(body, dict):
            continue
        usage = _recorded_usage(record["response"])
        if usage and _unmeasurable(body) is None:
            label = f"{Path(record['source_file']).stem}#{record['interaction_index']}"
            requests.append((label, body, usage["prompt_tokens"]))
    return requests


RECORDED_REQUESTS = _recorded_chat_requests()
PLAIN = [r for r in RECORDED_REQUESTS if not r[1].get("tools")]
WITH_TOOLS = [r for r in RECORDED_REQUESTS if r[1].get("tools")]


@pytest.mark.parametrize("label, body, prompt_tokens", PLAIN, ids=[r[0] for r in PLAIN])
def test_recorded_plain_requests_match_exactly(tok, label, body, prompt_tokens):
    counted = tok.count_messages_tokens(body["messages"], body["model"])
    assert prompt_tokens - counted == KNOWN_DEVIATIONS.get(body["model"], 0)


@pytest.mark.parametrize("label, body, prompt_tokens", WITH_TOOLS, ids=[r[0] for r in WITH_TOOLS])
def test_recorded_tool_requests_within_tolerance(tok, label, body, prompt_tokens):
    counted = tok.count_messages_tokens(body["messages"], body["model"], tools=body["tools"])
    assert abs(prompt_tokens - counted) <= TOOLS_TOLERANCE


def test_recorded_match_summary(tok):
    """The headline numbers: how many recorded requests are reproduced to the token."""
    exact_plain = sum(tok.count_messages_tokens(b["messages"], b["model"]) == p for _, b, p in PLAIN)
    exact_tools = sum(
        tok.count_messages_tokens(b["messages"], b["model"], tools=b["tools"]) == p for _, b, p in WITH_TOOLS
    )
    deviating = sum(b["model"] in KNOWN_DEVIATIONS for _, b, _ in PLAIN)
    print(f"\nplain-text requests: {exact_plain}/{len(PLAIN)} exact; with tools: {exact_tools}/{len(WITH_TOOLS)} exact")
    assert len(PLAIN) >= 20 and len(WITH_TOOLS) >= 10  # the fixture really was read
    assert exact_plain == len(PLAIN) - deviating
    assert exact_tools >= 9


# --- offline loading in a fresh process ---------------------------------------------------------

# Any connection attempt fails: a fallback download would make the child exit with a traceback.
_NO_NETWORK = """
import socket
def _refuse(*args, **kwargs):
    raise OSError("network disabled by test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


def _project_copy(root: Path) -> Path:
    """The modules the tokenizer needs, in a temp tree: its var/ is this tree's, and empty."""
    copy = root / "project"
    (copy / "config").mkdir(parents=True)
    (copy / "apps" / "llm").mkdir(parents=True)
    for relative in ("apps/__init__.py", "apps/llm/tokenizer.py", "apps/llm/conf.py"):
        shutil.copy2(BASE_DIR / relative, copy / relative)
    (copy / "apps" / "llm" / "__init__.py").write_text("")
    return copy


def _run_offline(copy: Path, body: str, env_overrides: dict[str, str | None]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "PYTHONPATH")}
    env["DJANGO_ENV"] = "test"
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    script = _NO_NETWORK + _SETTINGS + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=copy, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The project's settings as config/ makes them: tiktoken's files under var/.
_SETTINGS = """
from pathlib import Path
from django.conf import settings
settings.configure(LLM={"TOKENIZER_CACHE_DIR": Path.cwd() / "var" / "cache" / "tiktoken"})
"""

_LOAD_AND_REPORT = """
import json, os
import apps.llm.tokenizer as t
tok = t.Tokenizer()
print(json.dumps({
    "module": t.__file__,
    "o200k": t.load_encoding("o200k_base").encode("hello world"),
    "cl100k": t.load_encoding("cl100k_base").encode("hello world"),
    "count": tok.count_tokens("Hello world", "gpt-4o-mini"),
    "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR"),
}))
"""


def test_seeds_the_project_cache_offline(tmp_path):
    copy = _project_copy(tmp_path)
    cache = copy / "var" / "cache" / "tiktoken"
    assert not cache.exists()
    out = _run_offline(copy, _LOAD_AND_REPORT, {})
    assert out["module"] == str(copy / "apps" / "llm" / "tokenizer.py")
    assert (out["o200k"], out["cl100k"], out["count"]) == ([24912, 2375], [15339, 1917], 2)
    assert out["TIKTOKEN_CACHE_DIR"] == str(cache)
    seeded = cache / hashlib.sha1(O200K_URL.encode()).hexdigest()
    assert hashlib.sha256(seeded.read_bytes()).hexdigest() == O200K_SHA256
    assert (cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()).is_file()
    # Second run: the seeded files are used as they are.
    mtime = seeded.stat().st_mtime_ns
    assert _run_offline(copy, _LOAD_AND_REPORT, {})["o200k"] == [24912, 2375]
    assert seeded.stat().st_mtime_ns == mtime


def test_honours_the_users_cache_dir_and_replaces_a_corrupt_file(tmp_path):
    copy = _project_copy(tmp_path)
    user_cache = tmp_path / "my-tiktoken-cache"
    user_cache.mkdir()
    corrupt = user_cache / hashlib.sha1(O200K_URL.encode()).hexdigest()
    corrupt.write_bytes(b"not a BPE file")
    out = _run_offline(copy, _LOAD_AND_REPORT, {"TIKTOKEN_CACHE_DIR": str(user_cache)})
    assert out["o200k"] == [24912, 2375]
    assert out["TIKTOKEN_CACHE_DIR"] == str(user_cache)
    assert hashlib.sha256(corrupt.read_bytes()).hexdigest() == O200K_SHA256
    assert not (copy / "var").exists()


def test_honours_data_gym_cache_dir(tmp_path):
    copy = _project_copy(tmp_path)
    data_gym = tmp_path / "data-gym"
    out = _run_offline(copy, _LOAD_AND_REPORT, {"DATA_GYM_CACHE_DIR": str(data_gym)})
    assert out["o200k"] == [24912, 2375]
    assert out["TIKTOKEN_CACHE_DIR"] is None  # not forced over the user's DATA_GYM_CACHE_DIR
    assert (data_gym / hashlib.sha1(O200K_URL.encode()).hexdigest()).is_file()
    assert not (copy / "var").exists()


def test_concurrent_first_use_loads_each_encoding_once(tmp_path):
    copy = _project_copy(tmp_path)
    body = """
    import json, threading
    import apps.llm.tokenizer as t
    seeded = []
    original = t._seed_tiktoken_cache
    t._seed_tiktoken_cache = lambda name: seeded.append(name) or original(name)
    barrier = threading.Barrier(16)
    results = []
    def work(i):
        barrier.wait()
        model = "gpt-4o" if i % 2 else "gpt-4"
        results.append((id(t.load_encoding("o200k_base")), t.Tokenizer().count_tokens("hello world", model)))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    ids, counts = {r[0] for r in results}, sorted({r[1] for r in results})
    print(json.dumps({"seeded": sorted(seeded), "ids": len(ids), "counts": counts}))
    """
    out = _run_offline(copy, body, {"TIKTOKEN_CACHE_DIR": str(tmp_path / "cache")})
    assert out == {"seeded": ["cl100k_base", "o200k_base"], "ids": 1, "counts": [2]}
