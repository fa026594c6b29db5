"""ConnectionShares: per-process connection counts in one shared memory file."""

from __future__ import annotations

import mmap
import os
import sys

import pytest

from cryptmail.delivery import ConnectionShares


def test_each_process_counts_in_its_own_slot_and_sees_the_others() -> None:
    main = ConnectionShares.create(3)
    first, third = ConnectionShares(main.fd, 3, 0), ConnectionShares(main.fd, 3, 2)
    first.opened()
    first.opened()
    third.opened()
    assert [main.count(slot) for slot in range(3)] == [2, 0, 1]
    assert [third.count(slot) for slot in range(3)] == [2, 0, 1]
    assert not first.holds_fewest()  # slot 1 holds none
    assert not third.holds_fewest()
    third.closed()
    assert third.holds_fewest()
    third.closed()  # never below zero
    assert main.count(2) == 0


def test_the_main_process_owns_no_slot() -> None:
    main = ConnectionShares.create(2)
    with pytest.raises(ValueError, match="no slot"):
        main.opened()


def test_the_main_process_resets_the_slot_of_a_worker_that_died() -> None:
    main = ConnectionShares.create(2)
    dying, other = ConnectionShares(main.fd, 2, 1), ConnectionShares(main.fd, 2, 0)
    for _ in range(5):
        dying.opened()
    other.opened()
    assert other.holds_fewest() and not dying.holds_fewest()
    main.reset(1)
    assert main.count(1) == 0 and not other.holds_fewest()


def test_the_file_is_shared_memory_closed_on_exec() -> None:
    shares = ConnectionShares.create(4)
    assert os.fstat(shares.fd).st_size == 4 * 4
    assert not os.get_inheritable(shares.fd)
    view = mmap.mmap(shares.fd, 16)
    ConnectionShares(shares.fd, 4, 0).opened()
    assert view[:4] == (1).to_bytes(4, sys.byteorder)


def test_a_slot_outside_the_file_is_refused() -> None:
    shares = ConnectionShares.create(2)
    with pytest.raises(ValueError, match="slot 2"):
        ConnectionShares(shares.fd, 2, 2)


def test_a_vacant_slot_is_deferred_to_by_nobody() -> None:
    main = ConnectionShares.create(3)
    worker = ConnectionShares(main.fd, 3, 1)
    main.vacate(2)  # its worker is not running
    worker.opened()
    assert not main.present(2) and main.present(1)
    assert not worker.holds_fewest()  # slot 0 holds none
    ConnectionShares(main.fd, 3, 0).opened()
    assert worker.holds_fewest() and worker.held() == 1
    main.reset(2)  # a worker starts in it
    assert main.present(2) and not worker.holds_fewest()


def test_a_yielding_process_defers_on_a_tie() -> None:
    main = ConnectionShares.create(2)
    local = ConnectionShares(main.fd, 2, 0, yields=True)
    worker = ConnectionShares(main.fd, 2, 1)
    assert not local.holds_fewest() and worker.holds_fewest()  # 0 and 0: the worker's
    worker.opened()
    assert local.holds_fewest()
    local.opened()
    assert not local.holds_fewest()
    main.vacate(1)  # no worker running: the yielding process takes every connection
    assert local.holds_fewest()
