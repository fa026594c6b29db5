"""Server processes keep the cyclic garbage collector off the per-message path."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cryptmail.cli._gc import GC_YOUNG_THRESHOLD, settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_gc_freezes_what_start_loaded_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    loaded_at_start = [object(), [1, 2], {"a": 1}]
    settle_gc()
    assert gc.get_freeze_count() > len(loaded_at_start)
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    tracked = {id(o) for o in gc.get_objects()}
    assert id(loaded_at_start[1]) not in tracked  # frozen: no collection walks it again
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle made after the freeze is still collected
    del garbage
    assert gc.collect() >= 1
