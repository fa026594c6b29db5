"""Pre-forked LMTP workers (`_prefork`): forked only where no thread runs, dismissed
cleanly when not woken; what `cryptmail serve` imports before it forks them."""

from __future__ import annotations

import json
import subprocess
import sys

_DISMISS = """
import json, os, threading
from cryptmail.serve import prefork_workers
workers = prefork_workers(2)
pids = [w.pid for w in workers]
alive = [os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in pids]
for worker in workers:
    worker.dismiss()
gone = []
for pid in pids:
    try:
        os.waitpid(pid, os.WNOHANG)
        gone.append(False)
    except ChildProcessError:
        gone.append(True)  # reaped by dismiss
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
with_thread = prefork_workers(2)
stop.set()
thread.join()
print(json.dumps({"alive": alive, "gone": gone, "with_thread": len(with_thread)}))
"""

_SERVE_IMPORTS = (
    "import json, sys\nimport cryptmail.cli._serve\nprint(json.dumps(sorted(sys.modules)))\n"
)


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_dormant_workers_wait_and_exit_when_dismissed() -> None:
    result = json.loads(_run(_DISMISS))
    assert result == {"alive": [True, True], "gone": [True, True], "with_thread": 0}


def test_serve_forks_before_importing_alembic_or_numpy() -> None:
    # Whatever is imported before the fork is shared; these are not needed by an idle
    # server at all (the schema check reads the scripts, a search imports numpy, only
    # `metrics.enabled` imports prometheus_client).
    modules = json.loads(_run(_SERVE_IMPORTS))
    assert "cryptmail.serve._prefork" in modules
    unneeded = ("alembic", "mako", "numpy", "prometheus_client")
    assert [m for m in modules if m.split(".")[0] in unneeded] == []


def test_serve_imports_no_listener_or_dialect_it_may_not_use() -> None:
    # SASL, POP3 and ManageSieve come with their listener; a database dialect with the
    # URL that names it (the throttle's upserts import theirs where they run).
    modules = json.loads(_run(_SERVE_IMPORTS))
    optional = ("cryptmail.sasl", "cryptmail.pop3", "cryptmail.managesieve")
    assert [m for m in modules if m.startswith(optional)] == []
    assert [m for m in modules if m.startswith("sqlalchemy.dialects.")] == []
    # What every process imports at its first socket name lookup: imported before.
    assert "encodings.idna" in modules


_PRELOAD = """
import json, sys
from cryptmail.serve import prefork_workers
workers = prefork_workers(1, sys.argv[1])
for worker in workers:
    worker.dismiss()
drivers = ("sqlalchemy.dialects.", "aiosqlite", "asyncpg", "aiomysql")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(drivers))))
"""


def test_prefork_imports_the_dialect_and_driver_of_the_database_in_use() -> None:
    # Imported before the fork, the one dialect every process uses is in memory once.
    lite = json.loads(_run_args(_PRELOAD, "sqlite:////nonexistent/cryptmail.db"))
    assert "sqlalchemy.dialects.sqlite.aiosqlite" in lite
    assert "aiosqlite" in lite
    assert not [m for m in lite if m.startswith(("sqlalchemy.dialects.postgresql", "asyncpg"))]
    pg = json.loads(_run_args(_PRELOAD, "postgresql://u@localhost/db"))
    assert "sqlalchemy.dialects.postgresql.asyncpg" in pg
    assert "asyncpg" in pg
    assert not [m for m in pg if m.startswith(("sqlalchemy.dialects.mysql", "aiosqlite"))]


def _run_args(code: str, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


_FIRST_USE = """
import gc, json, os, struct, sys
import cryptmail.cli._serve
from cryptmail.crypto import delivery_mac_key, warm_up

def private_pages():
    # Anonymous pages this process alone maps: those it wrote since the fork.
    count = 0
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 and fields[5] != "[heap]":
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // 4096 * 8)
            for (entry,) in struct.iter_unpack("<Q", pagemap.read((end - start) // 4096 * 8)):
                count += entry >> 63 & 1 and entry >> 56 & 1
    return count

if sys.argv[1] == "warm":
    warm_up()
gc.collect()
gc.freeze()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    before = private_pages()
    delivery_mac_key(os.urandom(32))  # the child's first HKDF, as a worker's server key
    os.write(write, json.dumps(private_pages() - before).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 100).decode())
"""


def test_crypto_warmed_before_the_fork_is_not_set_up_again_in_each_process() -> None:
    cold = int(_run_args(_FIRST_USE, "cold"))
    warm = int(_run_args(_FIRST_USE, "warm"))
    # Measured: about 800 pages (3.3 MiB) cold, under 150 warm.
    assert warm * 3 < cold, (warm, cold)
