"""Response cache on Django's cache framework, with a tier in memory and coalescing of identical calls.

``LLMCache`` keeps the entries this process read or wrote lately in memory, in front of the
shared backend (files, Redis, ...): a repeated hit costs a dictionary lookup. The memory tier
is bounded (the oldest entry goes first) and keeps an entry exactly as long as the backend
does: the backend's value carries its expiry time. What another process can see stale:
entries are never rewritten while they live (the same key always stands for the same request),
so only ``clear()`` needs telling; it stamps the backend with a new generation, and every
process drops its memory tier within ``GENERATION_CHECK_SECONDS`` of that.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends.filebased import FileBasedCache

from apps.llm.folding import Folded
from apps.llm.types import MappingAccess

#: Bump when the cached payload's shape changes: old entries then simply miss.
KEY_VERSION = 2
#: The backend key whose value changes when the cache is cleared (see the module's docstring).
GENERATION_KEY = f"llm:v{KEY_VERSION}:generation"
#: How often a process checks the generation (the staleness of its memory tier after a clear).
GENERATION_CHECK_SECONDS = 1.0


class CacheInfo(MappingAccess):
    backend: str
    size: int | None
    max_size: int | None
    hits: int
    misses: int
    hit_rate: float
    ttl: int


def file_cache(directory: Path, *, ttl: int, max_entries: int) -> FileBasedCache:
    """A file-based Django cache backend in ``directory`` (safe across processes)."""
    return FileBasedCache(str(directory), {"TIMEOUT": ttl, "OPTIONS": {"MAX_ENTRIES": max_entries}})


# One encoder for every key: json.dumps with options builds a new one per call, and a hit's
# whole cost is about ten of those.
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode


def cache_key(parts: dict[str, Any]) -> str:
    """A versioned SHA-256 of the canonical JSON of everything that changes the answer."""
    canonical = _canonical_json(parts)
    return f"llm:v{KEY_VERSION}:{hashlib.sha256(canonical.encode()).hexdigest()}"


class MemoryTier:
    """Up to ``max_entries`` values with their expiry times; reads take no lock."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()  # writers only

    def get(self, key: str) -> dict | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.time():
            return None
        return entry[1]

    def put(self, key: str, expires: float, value: dict) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]  # the oldest
            self._entries[key] = (expires, value)

    def clear(self) -> None:
        with self._lock:
            self._entries = {}


class LLMCache:
    """Stores provider responses (as plain dicts, to be treated as read-only) for ``ttl`` seconds.

    Identical calls made at the same time in one process share a single provider call: the
    first caller makes it, the others wait for its result. ``memory_entries``: the size of
    the memory tier (0: none).
    """

    def __init__(
        self,
        backend: BaseCache | str = "llm",
        *,
        ttl: int = 3600,
        max_size: int | None = None,
        memory_entries: int = 1024,
    ):
        self.backend = caches[backend] if isinstance(backend, str) else backend
        self.ttl = ttl
        self.max_size = max_size
        self.memory = MemoryTier(memory_entries)
        self._outcomes: Folded[bool, tuple[int, int]] = Folded((0, 0), _count_outcome)
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[dict]] = {}
        self._generation: str | None = None
        self._generation_checked = float("-inf")

    def get(self, key: str) -> dict | None:
        value = self._lookup(key)
        self._outcomes.add(value is not None)
        return value

    def set(self, key: str, value: dict) -> None:
        expires = time.time() + self.ttl
        self.backend.set(key, (expires, value), self.ttl)
        self.memory.put(key, expires, value)

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The values found for ``keys`` in the backend (uncounted: see ``count``).

        Batches (embeddings) bypass the memory tier: their values are large and seldom asked
        for twice by one process.
        """
        stored = self.backend.get_many(keys)
        return {key: value for key, entry in stored.items() if (value := _unpack(entry)) is not None}

    def set_many(self, values: dict[str, dict]) -> None:
        expires = time.time() + self.ttl
        self.backend.set_many({key: (expires, value) for key, value in values.items()}, self.ttl)

    def count(self, *, hit: bool) -> None:
        """Count one lookup made with ``get_many`` (a batch counts as one: a hit if all was found)."""
        self._outcomes.add(hit)

    def get_or_call(self, key: str, call: Callable[[], dict]) -> tuple[dict, bool]:
        """The cached value for ``key``, or ``call()``'s (stored); and whether it was a hit."""
        value = self._lookup(key)
        if value is not None:
            self._outcomes.add(True)
            return value, True
        with self._lock:
            future = self._in_flight.get(key)
            leader = future is None
            if future is None:
                future = self._in_flight[key] = Future()
        if not leader:
            value = future.result()  # re-raises the leader's error: the same call failed
            self._outcomes.add(True)
            return value, True
        try:
            value = self._lookup(key)  # a leader that just finished may have stored it
            hit = value is not None
            if value is None:
                value = call()
                self.set(key, value)
            self._outcomes.add(hit)
            future.set_result(value)
            return value, hit
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._in_flight[key]

    def clear(self) -> None:
        """Empty the shared backend, and (within ``GENERATION_CHECK_SECONDS``) every process's memory tier."""
        self.backend.clear()
        self.backend.set(GENERATION_KEY, uuid.uuid4().hex, None)
        self.memory.clear()
        self._outcomes = Folded((0, 0), _count_outcome)

    def _lookup(self, key: str) -> dict | None:
        self._check_generation()
        value = self.memory.get(key)
        if value is not None:
            return value
        return self._remember(key, self.backend.get(key))

    def _remember(self, key: str, stored: Any) -> dict | None:
        """The value of a backend entry, kept in memory until it expires."""
        value = _unpack(stored)
        if value is not None:
            self.memory.put(key, stored[0], value)
        return value

    def _check_generation(self) -> None:
        now = time.monotonic()
        if now - self._generation_checked < GENERATION_CHECK_SECONDS:
            return
        self._generation_checked = now
        generation = self.backend.get(GENERATION_KEY)
        if generation != self._generation:
            self._generation = generation
            self.memory.clear()

    def size(self) -> int | None:
        """Entries stored, where the backend can tell cheaply."""
        backend = self.backend
        if isinstance(backend, FileBasedCache):
            return len(backend._list_cache_files())  # type: ignore[attr-defined]  # private Django API, not in the stubs
        if hasattr(backend, "_cache") and isinstance(backend._cache, dict):  # LocMemCache
            return len(backend._cache)
        return None

    def get_cache_info(self) -> CacheInfo:
        hits, misses = self._outcomes.value()
        total = hits + misses
        return CacheInfo(
            backend=type(self.backend).__name__,
            size=self.size(),
            max_size=self.max_size,
            hits=hits,
            misses=misses,
            hit_rate=hits / total if total else 0.0,
            ttl=self.ttl,
        )


def _unpack(stored: Any) -> dict | None:
    """The value of a backend entry; None when absent, expired, or not an entry of ours."""
    if not (isinstance(stored, tuple) and len(stored) == 2):
        return None  # written in another shape under this key: a miss, then overwritten
    expires, value = stored
    return value if expires > time.time() else None  # the backend's own clock may lag


def _count_outcome(counts: tuple[int, int], hit: bool) -> tuple[int, int]:
    hits, misses = counts
    return (hits + 1, misses) if hit else (hits, misses + 1)
