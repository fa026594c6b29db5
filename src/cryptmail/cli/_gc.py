"""Garbage-collector settings for long-running server processes."""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 10_000
"""Container allocations between young-generation collections (Python's default: 700)."""


def settle_gc() -> None:
    """Keep the cyclic garbage collector off the per-message path.

    What is loaded at start (modules, table metadata, config) lives as long as the
    process, yet every full collection walked it again. Each message a FETCH or a
    delivery handles makes a few dozen short-lived objects, so at the default threshold
    a young collection ran about every 20 messages. Measured over 1,000-message FETCHes:
    9 ms of collection per FETCH by default, 2.6 ms with the freeze, none with both.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
