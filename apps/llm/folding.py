"""Totals that many threads add to without waiting for one another."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class Folded[T, S]:
    """A running total of items folded into a state, added to without a lock.

    ``add`` is one ``deque.append`` (atomic in CPython); the items are folded into the state
    when the total is read, or by whichever adder finds more than ``limit`` of them waiting,
    so memory stays bounded without adders ever waiting on each other.
    """

    def __init__(self, initial: S, fold: Callable[[S, T], S], *, limit: int = 4096):
        self._state = initial
        self._fold_one = fold
        self._limit = limit
        self._items: deque[T] = deque()
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) > self._limit and self._lock.acquire(blocking=False):
            try:
                self._fold()
            finally:
                self._lock.release()

    def value(self) -> S:
        return self.read(lambda state: state)

    def read[R](self, read: Callable[[S], R]) -> R:
        """``read(state)`` with every item added so far folded in (a mutable state is read safely here)."""
        with self._lock:
            self._fold()
            return read(self._state)

    def _fold(self) -> None:
        items, state, fold = self._items, self._state, self._fold_one
        while items:
            state = fold(state, items.popleft())
        self._state = state
