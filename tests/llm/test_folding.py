"""Folded totals: many threads add at once, without a lock, and nothing is lost."""

from __future__ import annotations

import threading

from apps.llm.folding import Folded


def test_concurrent_adds_are_all_counted():
    total: Folded[int, int] = Folded(0, lambda state, item: state + item, limit=100)
    start = threading.Barrier(8)

    def add() -> None:
        start.wait()
        for _ in range(20_000):
            total.add(1)

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert total.value() == 160_000


def test_items_waiting_stay_bounded_and_read_sees_a_consistent_state():
    seen: Folded[str, set[str]] = Folded(set(), lambda state, item: state | {item}, limit=10)
    for n in range(1000):
        seen.add(str(n % 50))
    assert len(seen._items) <= 11  # folded by the adders as they went
    assert seen.read(sorted) == sorted(str(n) for n in range(50))
