"""A small thread-safe LRU bounded by entry count and by bytes, for analyses and decoded images.

Analyses are the expensive thing a page shows, and every widget change reruns the page: they
must be computed once per (image, model, analysis settings) and then only looked up. Streamlit's
``st.cache_data`` would pickle and copy tens of megabytes of maps on every lookup, and its
``max_entries`` says nothing about memory; this cache hands back the same immutable object and
evicts the least recently used entries once a byte budget is exceeded. One instance serves every
browser session of the server process, so a lock guards it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """LRU mapping with at most ``max_entries`` values and about ``max_bytes`` of them.

    ``size_of`` measures a value; a value larger than the whole budget is returned but not kept.
    Concurrent misses on one key may compute twice (the first result stored wins); computing
    happens outside the lock so one slow analysis never blocks lookups by other sessions.
    """

    def __init__(self, max_entries: int, max_bytes: int, size_of: Callable[[V], int]) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a cache needs room for at least one entry and one byte")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: Hashable, value: V) -> V:
        """Store ``value`` (unless another thread stored one first) and return the kept one."""
        size = int(self._size_of(value))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            if size > self.max_bytes:
                return value
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
            return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        found = self.get(key)
        if found is not None:
            return found
        with self._lock:
            self.misses += 1
        return self.put(key, compute())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
