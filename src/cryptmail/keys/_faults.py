"""Crash checkpoints for the kill tests.

`checkpoint(name)` does nothing unless the environment variable CRYPTMAIL_CRASH_AT names
this checkpoint; then the process kills itself with SIGKILL at that exact step, as a
power cut would. tests/keys/test_crash.py walks every checkpoint of a password change
and recovery and proves the old or the new password still works.
"""

from __future__ import annotations

import os
import signal

_VARIABLE = "CRYPTMAIL_CRASH_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
