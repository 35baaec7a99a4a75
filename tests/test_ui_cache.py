"""The byte- and entry-bounded LRU that holds analyses and decoded images."""

from __future__ import annotations

import threading

import pytest

from attnviz.ui.cache import BoundedCache


def test_least_recently_used_entry_goes_first():
    cache = BoundedCache(max_entries=2, max_bytes=100, size_of=len)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"  # "b" is now the oldest
    cache.put("c", "3")
    assert "b" not in cache and "a" in cache and "c" in cache


def test_byte_budget_evicts_and_oversized_values_are_not_kept():
    cache = BoundedCache(max_entries=10, max_bytes=10, size_of=len)
    cache.put("a", "xxxx")
    cache.put("b", "yyyy")
    cache.put("c", "zzzz")  # 12 bytes > 10: "a" goes
    assert "a" not in cache and cache.nbytes == 8
    assert cache.put("huge", "h" * 11) == "h" * 11
    assert "huge" not in cache and cache.nbytes == 8


def test_get_or_compute_computes_once():
    cache = BoundedCache(max_entries=4, max_bytes=100, size_of=len)
    calls = []
    for _ in range(3):
        assert cache.get_or_compute("k", lambda: calls.append(1) or "value") == "value"
    assert len(calls) == 1 and cache.misses == 1 and cache.hits == 2


def test_concurrent_users_get_the_same_stored_object():
    cache = BoundedCache(max_entries=4, max_bytes=10_000, size_of=lambda v: 1)
    seen, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        seen.append(cache.get_or_compute("k", lambda: object()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Misses racing each other may compute twice, but everyone ends with the stored object.
    stored = cache.get("k")
    assert len(seen) == 8 and all(v is stored for v in seen) and len(cache) == 1


def test_nonsense_bounds_are_refused():
    with pytest.raises(ValueError):
        BoundedCache(max_entries=0, max_bytes=1, size_of=len)
