import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache.backends.locmem import LocMemCache

from apps.llm.cache import KEY_VERSION, LLMCache, cache_key, file_cache


def test_key_is_canonical_versioned_sha256():
    a = cache_key({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    b = cache_key({"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"})
    assert a == b and a.startswith(f"llm:v{KEY_VERSION}:") and len(a.split(":")[-1]) == 64
    assert a != cache_key({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1})


@pytest.mark.parametrize("backend", ["file", "locmem"])
def test_get_set_ttl_and_info(tmp_path, backend):
    store = file_cache(tmp_path, ttl=60, max_entries=10) if backend == "file" else LocMemCache("t", {})
    cache = LLMCache(store, ttl=60, max_size=10)
    assert cache.get("k") is None
    cache.set("k", {"content": "x"})
    assert cache.get("k") == {"content": "x"}
    info = cache.get_cache_info()
    assert (info.hits, info.misses, info.hit_rate, info.size, info.max_size, info.ttl) == (1, 1, 0.5, 1, 10, 60)
    assert info["hits"] == 1


def test_identical_calls_in_flight_are_coalesced():
    cache = LLMCache(LocMemCache("coalesce", {}), ttl=60)
    calls: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def provider_call(prompt: str) -> dict:
        with lock:
            calls[prompt] = calls.get(prompt, 0) + 1
        time.sleep(0.05)  # the window in which duplicates arrive
        return {"content": prompt.upper()}

    def worker(thread: int) -> list[str]:
        start.wait()
        results = []
        for i in range(10):
            prompt = f"prompt-{i}"
            value, _ = cache.get_or_call(cache_key({"p": prompt}), lambda p=prompt: provider_call(p))
            results.append(value["content"])
        return results

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(worker, range(8)))
    assert all(out == [f"PROMPT-{i}" for i in range(10)] for out in outputs)
    assert calls == {f"prompt-{i}": 1 for i in range(10)}
    info = cache.get_cache_info()
    assert info.misses == 10 and info.hits == 70


def test_waiters_get_the_leaders_error_and_nothing_is_cached():
    cache = LLMCache(LocMemCache("errors", {}), ttl=60)
    gate = threading.Event()

    def failing() -> dict:
        gate.wait(2)
        raise RuntimeError("provider down")

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_call, "k", failing) for _ in range(4)]
        time.sleep(0.1)
        gate.set()
        for future in futures:
            with pytest.raises(RuntimeError, match="provider down"):
                future.result()
    assert cache.get("k") is None
