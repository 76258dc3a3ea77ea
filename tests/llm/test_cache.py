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


# -- the memory tier --------------------------------------------------------------------------


class CountingCache(LocMemCache):
    """A real local-memory backend that counts the reads that reach it."""

    def __init__(self, name: str):
        super().__init__(name, {})
        self.reads = 0

    def get(self, key, default=None, version=None):
        self.reads += 1
        return super().get(key, default, version)


def test_repeated_hits_are_served_from_memory_and_still_counted():
    backend = CountingCache("memory-hits")
    cache = LLMCache(backend, ttl=60)
    cache.set("k", {"content": "x"})
    assert cache.get("k") == {"content": "x"}  # its first lookup also reads the cache's generation
    reads = backend.reads
    assert [cache.get("k") for _ in range(5)] == [{"content": "x"}] * 5
    assert backend.reads == reads  # memory answered
    assert cache.get_cache_info().hits == 6
    other = LLMCache(backend, ttl=60)  # another process: reads the backend once, then remembers
    assert other.get("k") == other.get("k") == {"content": "x"}
    assert backend.reads == reads + 2  # its generation check and the one read of the entry


def test_memory_keeps_an_entry_no_longer_than_the_backend_does():
    backend = LocMemCache("memory-expiry", {})
    cache = LLMCache(backend, ttl=60)
    # Written by another process 59 minutes ago with a one-hour TTL: one minute left, not an hour.
    backend.set("k", (time.time() + 60, {"content": "x"}), 60)
    assert cache.get("k") == {"content": "x"}
    assert cache.memory._entries["k"][0] <= time.time() + 60
    backend.set("gone", (time.time() - 1, {"content": "old"}), 60)  # expired in its own terms
    assert cache.get("gone") is None


def test_memory_is_bounded_oldest_first():
    cache = LLMCache(LocMemCache("memory-bound", {}), ttl=60, memory_entries=2)
    for key in "abc":
        cache.set(key, {"content": key})
    assert list(cache.memory._entries) == ["b", "c"]
    assert cache.get("a") == {"content": "a"}  # still in the backend


def test_a_clear_reaches_every_process_memory_tier():
    backend = LocMemCache("memory-clear", {})
    here, there = LLMCache(backend, ttl=60), LLMCache(backend, ttl=60)
    here.set("k", {"content": "x"})
    assert there.get("k") == {"content": "x"}  # now in there's memory
    here.clear()
    there._generation_checked = float("-inf")  # as GENERATION_CHECK_SECONDS later
    assert there.get("k") is None and here.get("k") is None


def test_an_entry_of_another_shape_under_a_key_is_a_miss_not_an_error():
    backend = LocMemCache("memory-shape", {})
    backend.set("k", {"embedding": [0.1]}, 60)  # written raw, as an older version did
    cache = LLMCache(backend, ttl=60)
    assert cache.get("k") is None and cache.get_many(["k"]) == {}
