"""`serve` processes cannot dump core (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), and lock their
memory against swap where RLIMIT_MEMLOCK allows it.

Each check runs in a fresh subprocess, since the settings are for the whole process
and would stay on the test runner otherwise.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHECK = """
import ctypes, resource
from cryptmail.serve._hardening import forbid_core_dumps
libc = ctypes.CDLL(None, use_errno=True)
before = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
forbid_core_dumps()
after = libc.prctl(3, 0, 0, 0, 0)
print(before, after, *resource.getrlimit(resource.RLIMIT_CORE))
"""


def test_forbid_core_dumps_in_a_fresh_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["1", "0", "0", "0"], done.stderr


_LOCK = """
from cryptmail.serve._hardening import keep_out_of_swap
locked = keep_out_of_swap()
secret = bytearray(b"k" * (4 << 20))  # touched after the call: MCL_FUTURE covers it
status = open("/proc/self/status").read()
vmlck = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmLck:"))
print(locked, vmlck)
"""


def test_memory_is_locked_when_the_kernel_allows_it() -> None:
    import resource

    from cryptmail.serve._hardening import _may_lock_beyond_the_limit

    unlimited = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] == resource.RLIM_INFINITY
    if not (unlimited or _may_lock_beyond_the_limit()):
        pytest.skip("neither RLIMIT_MEMLOCK unlimited nor CAP_IPC_LOCK (CI runs as root)")
    done = subprocess.run(
        [sys.executable, "-c", _LOCK], capture_output=True, text=True, check=True, timeout=60
    )
    locked, vmlck_kib = done.stdout.split()
    assert locked == "True"
    assert int(vmlck_kib) >= 4 << 10  # at least the 4 MiB touched after the call


def test_memory_is_left_alone_under_a_service_users_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes
    import resource

    from cryptmail.serve import _hardening

    monkeypatch.setattr(_hardening, "_may_lock_beyond_the_limit", lambda: False)
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (8 << 20, 8 << 20))
    calls: list[int] = []

    class _Libc:
        def mlockall(self, flags: int) -> int:
            calls.append(flags)
            return 0

    monkeypatch.setattr(ctypes, "CDLL", lambda *_a, **_k: _Libc())
    assert _hardening.keep_out_of_swap() is False
    assert calls == []  # locking everything under 8 MiB would make allocations fail
