"""Response cache on Django's cache framework, with coalescing of identical calls in flight."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends.filebased import FileBasedCache

from apps.llm.types import MappingAccess

#: Bump when the cached payload's shape changes: old entries then simply miss.
KEY_VERSION = 1


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


def cache_key(parts: dict[str, Any]) -> str:
    """A versioned SHA-256 of the canonical JSON of everything that changes the answer."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"llm:v{KEY_VERSION}:{hashlib.sha256(canonical.encode()).hexdigest()}"


class LLMCache:
    """Stores provider responses (as plain dicts) for ``ttl`` seconds.

    Identical calls made at the same time in one process share a single provider call: the
    first caller makes it, the others wait for its result.
    """

    def __init__(self, backend: BaseCache | str = "llm", *, ttl: int = 3600, max_size: int | None = None):
        self.backend = caches[backend] if isinstance(backend, str) else backend
        self.ttl = ttl
        self.max_size = max_size
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[dict]] = {}

    def get(self, key: str) -> dict | None:
        value = self.backend.get(key)
        self._count(hit=value is not None)
        return value

    def set(self, key: str, value: dict) -> None:
        self.backend.set(key, value, self.ttl)

    def get_or_call(self, key: str, call: Callable[[], dict]) -> tuple[dict, bool]:
        """The cached value for ``key``, or ``call()``'s (stored); and whether it was a hit."""
        value = self.backend.get(key)
        if value is not None:
            self._count(hit=True)
            return value, True
        with self._lock:
            future = self._in_flight.get(key)
            leader = future is None
            if future is None:
                future = self._in_flight[key] = Future()
        if not leader:
            value = future.result()  # re-raises the leader's error: the same call failed
            self._count(hit=True)
            return value, True
        try:
            value = self.backend.get(key)  # a leader that just finished may have stored it
            hit = value is not None
            if not hit:
                value = call()
                self.set(key, value)
            self._count(hit=hit)
            future.set_result(value)
            return value, hit
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                del self._in_flight[key]

    def clear(self) -> None:
        self.backend.clear()
        with self._lock:
            self._hits = self._misses = 0

    def _count(self, *, hit: bool) -> None:
        with self._lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def size(self) -> int | None:
        """Entries stored, where the backend can tell cheaply."""
        backend = self.backend
        if isinstance(backend, FileBasedCache):
            return len(backend._list_cache_files())  # type: ignore[attr-defined]  # private Django API, not in the stubs
        if hasattr(backend, "_cache") and isinstance(backend._cache, dict):  # LocMemCache
            return len(backend._cache)
        return None

    def get_cache_info(self) -> CacheInfo:
        with self._lock:
            hits, misses = self._hits, self._misses
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
