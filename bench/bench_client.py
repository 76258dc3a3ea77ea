"""LLMClient overhead vs a raw `openai` SDK call, and cache-hit latency (file and Redis).

Both sides talk to the same loopback OpenAI-protocol simulator in the same run, interleaved,
so machine noise hits them alike; the ratio is what to read. Accounting to the database is
not attached here (bench_logging.py measures it).

    .venv/bin/python bench/bench_client.py [--calls 400]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from _setup import setup_django, summary, table

setup_django()

import openai  # noqa: E402
import redis  # noqa: E402
from django.core.cache.backends.locmem import LocMemCache  # noqa: E402
from django.core.cache.backends.redis import RedisCache  # noqa: E402

from apps.llm.cache import file_cache  # noqa: E402
from apps.llm.client import LLMClient  # noqa: E402
from apps.llm.testing.simulator import OpenAISimulator  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
]
MODEL = "gpt-4o-mini"
REDIS_URL = "redis://127.0.0.1:6379/14"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def overhead(sim: OpenAISimulator, calls: int) -> list[list[object]]:
    raw = openai.OpenAI(base_url=sim.base_url, api_key="sk-bench", max_retries=0, timeout=30)
    client = LLMClient(
        apikey_openai="sk-bench",
        openai_base_url=sim.base_url,
        configure_from_env=False,
        cache_backend=LocMemCache("bench", {}),
        recorders=[],
    )
    raw_call = lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES)  # noqa: E731
    ours_call = lambda: client.chat_completion(MESSAGES, MODEL, cache=False)  # noqa: E731
    for _ in range(30):  # warm connections, price table, tokenizer
        raw_call(), ours_call()
    raw_times, ours_times = [], []
    for _ in range(calls):
        raw_times.append(timed(raw_call))
        ours_times.append(timed(ours_call))
    (raw_med, raw_p95), (our_med, our_p95) = summary(raw_times), summary(ours_times)
    return [
        ["raw openai SDK", raw_med, raw_p95, 1.0, ""],
        ["LLMClient.chat_completion", our_med, our_p95, our_med / raw_med, "<= 1.10x"],
    ]


def cache_hits(sim: OpenAISimulator, backends: dict, calls: int) -> list[list[object]]:
    rows = []
    for name, backend in backends.items():
        client = LLMClient(
            apikey_openai="sk-bench",
            openai_base_url=sim.base_url,
            configure_from_env=False,
            cache_backend=backend,
            recorders=[],
        )
        client.chat_completion(MESSAGES, MODEL)  # the miss that fills the cache
        key = client._chat_cache_key(client.providers["openai"], MODEL, MESSAGES, {})
        raw_get, hit = [], []
        for _ in range(calls):
            raw_get.append(timed(lambda: backend.get(key)))
            hit.append(timed(lambda: client.chat_completion(MESSAGES, MODEL)))
        assert client.chat_completion(MESSAGES, MODEL).cached
        (g_med, g_p95), (h_med, h_p95) = summary(raw_get), summary(hit)
        rows.append([f"{name}: backend.get (baseline)", g_med, g_p95, 1.0, ""])
        rows.append([f"{name}: chat_completion cache hit", h_med, h_p95, h_med / g_med, "< 0.3 ms median"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    headers = ["case", "median ms", "p95 ms", "ratio", "target"]
    with OpenAISimulator() as sim:
        print(f"Client overhead, {args.calls} interleaved calls each, loopback simulator\n")
        print(table(headers, overhead(sim, args.calls)))
        backends = {}
        with tempfile.TemporaryDirectory() as tmp:
            backends["file"] = file_cache(Path(tmp), ttl=3600, max_entries=1000)
            try:
                redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
                backends["redis"] = RedisCache(REDIS_URL, {"KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}"})
            except redis.RedisError:
                print("\n(Redis not answering at 127.0.0.1:6379: skipping the Redis cache)")
            print(f"\nCache hits, {args.calls} calls each\n")
            print(table(headers, cache_hits(sim, backends, args.calls)))


if __name__ == "__main__":
    main()
