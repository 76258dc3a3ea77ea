"""Cost of ``Tokenizer.count_tokens`` against a raw tiktoken call on the same text.

    .venv/bin/python bench/bench_tokenizer.py [--rounds 200] [--quick]

Texts of ~10, ~500 and ~8,000 o200k tokens are cut from real prose and code every checkout has
(docstrings and source of a fixed list of standard-library modules). Each round times, per text
and in rotating order, batches of ``len(enc.encode(text))`` (the raw tiktoken call),
``len(enc.encode_ordinary(text))`` (the same semantics as ``count_tokens``) and
``Tokenizer().count_tokens(text, "gpt-4o")``; the table shows medians per call over all rounds.
A second table times ``count_messages_tokens`` on a typical tool-using conversation against the
bare encoding of the same strings. Prints numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The tokenizer asks config.env for the project's var/ directory (its tiktoken cache) unless
# TIKTOKEN_CACHE_DIR is set; development is what `make run` uses for local commands.
os.environ.setdefault("DJANGO_ENV", "development")

from apps.llm.tokenizer import Tokenizer, load_encoding

MODEL = "gpt-4o"
TARGET = 1.10
CORPUS_MODULES = ("argparse", "json", "logging", "pathlib", "subprocess", "textwrap", "threading", "typing")
CASES = (("short", 10), ("medium", 500), ("long", 8_000))
# Calls per timed batch, so that one batch takes well over the timer's resolution.
BATCH = {"short": 2_000, "medium": 100, "long": 5}


def corpus() -> str:
    """Prose and code, in a fixed order: module docstrings first, then the modules' source."""
    import importlib

    modules = [importlib.import_module(name) for name in CORPUS_MODULES]
    docs = [inspect.getdoc(module) or "" for module in modules]
    sources = [inspect.getsource(module) for module in modules]
    return "\n\n".join(docs + sources)


def texts() -> dict[str, str]:
    """Each case's text: the corpus' first N tokens, decoded back to a string."""
    encoding = load_encoding("o200k_base")
    tokens = encoding.encode_ordinary(corpus())
    return {name: encoding.decode(tokens[:size]) for name, size in CASES}


def per_call_ns(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        function()
    return (time.perf_counter_ns() - started) / calls


def interleaved(candidates: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    """Median ns per call of each candidate; their order rotates every round."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(per_call_ns(candidates[name], calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def conversation() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                "name": "search_documents",
                "description": "Search the knowledge base and return the most relevant passages.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "What to look for."},
                        "limit": {"type": "integer", "description": "How many passages to return."},
                    },
                    "required": ["query"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_invoice",
                "description": "Fetch an invoice by its number.",
                "parameters": {"type": "object", "properties": {"number": {"type": "string"}}, "required": ["number"]},
            },
        },
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support assistant for an invoicing product. Answer briefly."},
        {"role": "user", "content": "Why was I charged twice for invoice INV-2041 this month?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_invoice", "arguments": '{"number":"INV-2041"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"number": "INV-2041", "amount": "49.00", '
            '"charges": [{"date": "2025-03-01"}, {"date": "2025-03-02"}]}',
        },
        {
            "role": "assistant",
            "content": "The invoice shows two charges a day apart; the second is a retry after a failed payment "
            "notification. It will be refunded automatically within five business days.",
        },
        {"role": "user", "content": "Can you point me to the refund policy?"},
        {"role": "assistant", "content": "Sure, let me look that up."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks, and include the section on retries."}]},
    ]
    return messages, tools


def _strings(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(part["text"] for part in content if part.get("type") == "text")
        for call in message.get("tool_calls") or ():
            out += [call["function"]["name"], call["function"]["arguments"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds per case (default 200)")
    parser.add_argument("--quick", action="store_true", help="20 rounds, for a smoke run")
    args = parser.parse_args()
    rounds = 20 if args.quick else args.rounds

    started = time.perf_counter()
    tokenizer = Tokenizer()
    tokenizer.count_tokens("warm up", MODEL)
    first_use_ms = (time.perf_counter() - started) * 1000
    encoding = load_encoding("o200k_base")
    cases = texts()

    print(f"tiktoken encoding o200k_base, model {MODEL!r}, {rounds} rounds, medians per call")
    print(f"first use in this process (load encoding, seed cache if needed): {first_use_ms:.0f} ms\n")
    header = (
        f"{'case':<8} {'tokens':>6} {'encode()':>11} {'encode_ord()':>13} {'ours':>11}"
        f" {'vs encode':>10} {'vs ord':>8} {'target':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, text in cases.items():
        assert tokenizer.count_tokens(text, MODEL) == len(encoding.encode(text))
        result = interleaved(
            {
                "encode": functools.partial(_count, encoding.encode, text),
                "ordinary": functools.partial(_count, encoding.encode_ordinary, text),
                "ours": functools.partial(tokenizer.count_tokens, text, MODEL),
            },
            BATCH[name],
            rounds,
        )
        vs_encode = result["ours"] / result["encode"]
        vs_ordinary = result["ours"] / result["ordinary"]
        print(
            f"{name:<8} {len(encoding.encode(text)):>6} {_fmt(result['encode']):>11}"
            f" {_fmt(result['ordinary']):>13} {_fmt(result['ours']):>11}"
            f" {vs_encode:>9.3f}x {vs_ordinary:>7.3f}x {f'<= {TARGET:.2f}x':>8}"
        )

    messages, tools = conversation()
    strings = _strings(messages)
    total = tokenizer.count_messages_tokens(messages, MODEL, tools=tools)
    result = interleaved(
        {
            "bare": lambda: sum(len(encoding.encode_ordinary(s)) for s in strings),
            "messages": lambda: tokenizer.count_messages_tokens(messages, MODEL),
            "messages+tools": lambda: tokenizer.count_messages_tokens(messages, MODEL, tools=tools),
        },
        200,
        rounds,
    )
    print(f"\ncount_messages_tokens: {len(messages)} messages (a tool call and result), 2 tools, {total} prompt tokens")
    print(f"{'what':<46} {'median':>10} {'vs bare':>8}")
    print("-" * 66)
    for label, key in (
        ("bare encode_ordinary() of the message strings", "bare"),
        ("count_messages_tokens(messages)", "messages"),
        ("count_messages_tokens(messages, tools=tools)", "messages+tools"),
    ):
        print(f"{label:<46} {_fmt(result[key]):>10} {result[key] / result['bare']:>7.2f}x")


def _count(encode: Callable[[str], list[int]], text: str) -> int:
    return len(encode(text))


def _fmt(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns < 1_000_000 else f"{ns / 1_000_000:.2f} ms"


if __name__ == "__main__":
    main()
