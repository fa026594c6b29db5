"""Running, waiting for and cleaning up after server processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from ._errors import ServerStartError

KEEP_DIRS_ENV = "CRYPTMAIL_KEEP_SERVER_DIRS"


def make_private_dir(prefix: str, *, owner: tuple[int, int] | None = None) -> Path:
    """Create a fresh 0755 folder in the system temp folder, owned by ``owner`` (uid, gid) if given.

    pytest's own ``tmp_path`` lives under a 0700 folder of root, which the
    unprivileged users that Postfix and PostgreSQL switch to cannot enter; so
    the runners keep their data here instead.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if owner is not None:
        os.chown(path, *owner)
    return path


def remove_private_dir(path: Path) -> None:
    """Delete a folder made by :func:`make_private_dir`, unless CRYPTMAIL_KEEP_SERVER_DIRS=1."""
    if os.environ.get(KEEP_DIRS_ENV) == "1":
        return
    shutil.rmtree(path, ignore_errors=True)


def log_tail(path: Path, lines: int = 25) -> str:
    """Return the last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def run_checked(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float = 60.0,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    as_user: tuple[int, int] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a setup command, as ``as_user`` (uid, gid) if given; return its result.

    Raises:
        ServerStartError: the command exited non-zero or timed out; the message holds its output.
    """
    uid, gid, groups = _identity(as_user)
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            cwd=cwd,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
    except subprocess.TimeoutExpired as exc:
        message = f"{what}: `{argv[0]}` did not finish within {timeout:.0f} s"
        raise ServerStartError(message) from exc
    if result.returncode != 0:
        output = result.stdout.decode(errors="replace").strip()[-3000:]
        raise ServerStartError(
            f"{what}: `{' '.join(argv)}` exited with {result.returncode}:\n{output}"
        )
    return result


def spawn(
    argv: Sequence[str],
    *,
    output: Path | None = None,
    cwd: Path | None = None,
    as_user: tuple[int, int] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a server in the background, stdin closed, as ``as_user`` (uid, gid) if given.

    Its stdout and stderr both go to the file ``output`` (truncated first), or nowhere.
    """
    uid, gid, groups = _identity(as_user)
    with contextlib.ExitStack() as stack:
        sink = subprocess.DEVNULL if output is None else stack.enter_context(output.open("wb"))
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
            user=uid,
            group=gid,
            extra_groups=groups,
        )


def _identity(as_user: tuple[int, int] | None) -> tuple[int | None, int | None, list[int] | None]:
    """``user``, ``group`` and ``extra_groups`` for subprocess: ``as_user`` only, or ourselves."""
    if as_user is None:
        return None, None, None
    return as_user[0], as_user[1], []


def wait_answering(
    answers: Callable[[], bool],
    *,
    server: str,
    advice: str,
    logs: Mapping[str, Path],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``answers`` until it returns True, giving up early if ``process`` exits.

    Raises:
        ServerStartError: ``server`` (its name and address) exited or did not answer within
            ``timeout``; the message says which, then ``advice``, then the tail of each log
            in ``logs`` (what it is, e.g. ``"log"``, to its path).
    """
    alive = None if process is None else lambda: process.poll() is None
    if wait_until(answers, timeout=timeout, alive=alive, interval=interval):
        return
    if process is not None and process.poll() is not None:
        state = f"exited with {process.returncode}"
    else:
        state = f"did not answer within {timeout:.0f} s"
    tails = "\n".join(f"Its {what} ends with:\n{log_tail(path)}" for what, path in logs.items())
    raise ServerStartError(f"{server} {state}. {advice} {tails}")


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> bool:
    """Poll ``ready`` until it returns True; return False on timeout or once ``alive`` says no."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if alive is not None and not alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_process(
    process: subprocess.Popen[bytes],
    *,
    first_signal: signal.Signals = signal.SIGTERM,
    grace: float = 20.0,
) -> None:
    """Ask a child server to stop with ``first_signal``; SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(first_signal)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop_pids(live_pids: Callable[[], Collection[int]], *, grace: float) -> None:
    """Wait up to ``grace`` seconds until ``live_pids()`` is empty; SIGKILL whatever is left.

    For servers that daemonize, so there is no child to wait for: the caller
    asks them to stop first, and names the processes that must go.
    """
    if wait_until(lambda: not live_pids(), timeout=grace):
        return
    for pid in live_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not live_pids(), timeout=5)


def pids_with_environ(entry: str) -> list[int]:
    """Live processes whose environment holds ``entry`` (``NAME=value``, exactly)."""
    marker = entry.encode()
    pids = []
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            environ = (folder / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and pid_alive(int(folder.name)):
            pids.append(int(folder.name))
    return pids


def pid_alive(pid: int) -> bool:
    """Tell whether ``pid`` runs; a zombie counts as gone.

    Postfix's master daemonizes, so after it exits it stays a zombie until
    PID 1 reaps it; in a container that can take a while.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


class PrivateServer:
    """What every runner shares: its own folder, perhaps a child process, start() and stop().

    A subclass implements ``start()`` (making the folder with :meth:`_new_folder`)
    and ``stop()`` (ending with :meth:`_discard`); the class is then a context
    manager that starts on entry and stops on exit.
    """

    base_dir: Path | None = None
    """The server's folder while it runs, None before ``start()`` and after ``stop()``."""
    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def _dir(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError(f"{type(self).__name__} has no folder until start() is called")
        return self.base_dir

    @contextlib.contextmanager
    def _new_folder(self, prefix: str, *, owner: tuple[int, int] | None = None) -> Iterator[Path]:
        """Make the folder (see :func:`make_private_dir`) for the start steps in the block.

        If a step fails, even by KeyboardInterrupt, ``stop()`` runs before the
        error goes on, so a failed start leaves no process and no folder behind.
        """
        self.base_dir = make_private_dir(prefix, owner=owner)
        try:
            yield self.base_dir
        except BaseException:
            self.stop()
            raise

    def _discard(self, first_signal: signal.Signals = signal.SIGTERM) -> None:
        """Stop the child process, if any (see :func:`stop_process`), and delete the folder."""
        if self._process is not None:
            stop_process(self._process, first_signal=first_signal)
            self._process = None
        if self.base_dir is not None:
            remove_private_dir(self.base_dir)
            self.base_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _holds_a_write_lock(pid: int, data_dir: Path) -> bool:
    """Whether `pid` holds the writers' turn or SQLite's write lock on the database
    (from /proc/locks; lines starting "->" are waiters)."""
    inodes = {
        os.stat(data_dir / name).st_ino
        for name in ("cryptmail.db-writers", "cryptmail.db-shm")
        if (data_dir / name).exists()
    }
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[3] != "WRITE":
            continue
        if int(fields[4]) == pid and int(fields[5].rsplit(":", 1)[1]) in inodes:
            return True
    return False


def stop_between_writes(pid: int, data_dir: Path) -> None:
    """SIGSTOP `pid` at a moment it holds no write lock. Stopped inside a write, it
    would keep every other process of the database from writing (SQLite has one writer
    at a time), which no server could deliver around."""
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        # The signal arrives asynchronously: the locks are read once it has stopped.
        if not wait_until(lambda: _state(pid) == "T", timeout=10, interval=0.001):
            raise AssertionError(f"process {pid} did not stop on SIGSTOP")
        if not _holds_a_write_lock(pid, data_dir):
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError(f"process {pid} held a write lock at every try")


def _state(pid: int) -> str:
    """The one-letter state of `pid` (/proc/<pid>/stat: "T" once stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
