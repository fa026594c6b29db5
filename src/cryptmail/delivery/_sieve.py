"""Sieve at delivery: which scripts run for a recipient, and what their answers cost.

The global scripts (`sieve.before`, `sieve.after`, `sieve.global_dir`) are compiled
once when the worker starts. The user's active script is read with the recipient, at
RCPT, in the same transaction (`read_active`: the sealed store's `read_active_sync`,
wired by `serve`), still sealed; its compiled tree is kept in a small in-memory cache
keyed by the user and the sealed row's digest, so a delivery opens and compiles the
script only when it changed (every write seals it anew, so a change has a new digest,
seen by every worker at its next RCPT for the user). Compiled trees are plaintext in
this worker's memory only, never on disk.

The interpreter is pure (cryptmail.sieve); what it asks the world is answered here:
a mailbox exists when delivery can address it without the user's key (INBOX and the
default folders, by role); a duplicate id is looked up in cm_sieve_records; an included
global script is read from `global_dir`. A run that needs the database (duplicate)
runs in a worker thread and asks the loop; every other run stays on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_calling_back
from cryptmail.config import Config
from cryptmail.db import UserId, run_transaction
from cryptmail.errors import ConfigError, SieveSyntaxError
from cryptmail.sieve import (
    ActiveScript,
    CompiledScript,
    DuplicateMark,
    SieveResult,
    SieveSettings,
    duplicate_record,
    note_record,
    seen_record,
)

if TYPE_CHECKING:
    from cryptmail.sieve import SieveEnvelope, SieveMessage

log = logging.getLogger(__name__)

# The default folders delivery can file into by role, without the user's key.
ROLE_BY_FOLDER = {
    "Sent": "sent",
    "Drafts": "drafts",
    "Trash": "trash",
    "Junk": "junk",
    "Archive": "archive",
}
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CACHE_SIZE = 1024

FoundScript = ActiveScript | str | None
"""A user's active script as a reader found it: the sealed row, a text (a reader
standing in for the store), or None for no active script."""
ActiveScriptReader = Callable[[Connection, UserId], FoundScript]


def no_user_scripts(conn: Connection, user_id: UserId) -> FoundScript:
    """The reader until the sealed script store is wired in: no user has a script."""
    return None


@dataclass(frozen=True)
class SieveSetup:
    """The compiled global scripts and limits, made once per worker from the config."""

    before: CompiledScript | None = None
    after: CompiledScript | None = None
    global_dir: Path | None = None
    relay: str = ""
    max_script_size: int = 262144
    max_commands: int = 10_000
    settings: SieveSettings = field(default_factory=SieveSettings)


def _compile(text: str, name: str, max_size: int, max_commands: int) -> CompiledScript:
    """`sieve.compile_script`, SieveSyntaxError if the script does not compile."""
    # The parser (sievelib) and the interpreter are imported with the first script a
    # worker compiles, not at its start: a worker whose recipients have no script and
    # that has no global one never loads them (about 2 MiB of the 40 a worker may use).
    from cryptmail.sieve import compile_script

    return compile_script(text, name=name, max_size=max_size, max_commands=max_commands)


def _compile_file(path: Path, name: str, setup_limits: tuple[int, int]) -> CompiledScript:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sieve.{name} = {str(path)!r}: cannot read it ({exc})") from exc
    try:
        return _compile(text, name, setup_limits[0], setup_limits[1])
    except SieveSyntaxError as exc:
        raise ConfigError(f"sieve.{name} = {str(path)!r}: {exc}") from exc


def load_sieve_setup(config: Config) -> SieveSetup:
    """Compile `sieve.before` and `sieve.after`; ConfigError names the file and line."""
    s = config.sieve
    limits = (s.max_script_size, s.max_commands)
    return SieveSetup(
        before=_compile_file(Path(s.before), "before", limits) if s.before else None,
        after=_compile_file(Path(s.after), "after", limits) if s.after else None,
        global_dir=Path(s.global_dir) if s.global_dir else None,
        relay=s.smtp_relay,
        max_script_size=s.max_script_size,
        max_commands=s.max_commands,
        settings=SieveSettings(
            max_actions=s.max_actions,
            max_redirects=s.max_redirects,
            recipient_delimiter=config.lmtp.recipient_delimiter,
        ),
    )


def sieve_delivery(
    engine: AsyncEngine, config: Config, read_active: ActiveScriptReader | None = None
) -> SieveDelivery | None:
    """The worker's Sieve, or None when nothing can run: no global script and no store
    of user scripts (`read_active`) to read from."""
    s = config.sieve
    if read_active is None and not (s.before or s.after):
        return None
    return SieveDelivery(engine, load_sieve_setup(config), read_active or no_user_scripts)


class _Context:
    """The interpreter's questions for one recipient; called from a worker thread when
    `loop` is set (it then asks the loop and waits), else on the loop itself."""

    def __init__(
        self, sieve: SieveDelivery, user_id: UserId, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.sieve = sieve
        self.user_id = user_id
        self.loop = loop

    def mailbox_exists(self, name: str) -> bool:
        return name.upper() == "INBOX" or name in ROLE_BY_FOLDER

    def duplicate_seen(self, mark: DuplicateMark) -> bool:
        if self.loop is None:
            raise RuntimeError("duplicate needs a run in a worker thread")
        record = duplicate_record(self.user_id, mark.handle, mark.unique_id)
        future = asyncio.run_coroutine_threadsafe(
            seen_record(self.sieve.engine, self.user_id, record), self.loop
        )
        return future.result(timeout=30)

    def include(self, location: str, name: str) -> CompiledScript | None:
        if location != "global":
            return None  # personal includes: the sealed script store has no reader here yet
        return self.sieve.global_script(name)


class SieveDelivery:
    """Runs before, the user's active script and after for one recipient's copy."""

    def __init__(
        self,
        engine: AsyncEngine,
        setup: SieveSetup,
        read_active: ActiveScriptReader = no_user_scripts,
    ) -> None:
        self.engine = engine
        self.setup = setup
        self.read_active = read_active
        """Run in the caller's transaction: LMTP calls it with the recipient lookup."""
        # user id -> (digest, compiled tree): one version per user, so a changed
        # script's old tree leaves memory when the new one is compiled.
        self._user_scripts: OrderedDict[UserId, tuple[bytes, CompiledScript | None]] = OrderedDict()
        self._globals: dict[str, CompiledScript | None] = {}

    @property
    def relay(self) -> str:
        return self.setup.relay

    def global_script(self, name: str) -> CompiledScript | None:
        if name in self._globals:
            return self._globals[name]
        found: CompiledScript | None = None
        directory = self.setup.global_dir
        if directory is not None and _SCRIPT_NAME.match(name):
            try:
                text = (directory / f"{name}.sieve").read_text(encoding="utf-8")
                found = _compile(text, name, self.setup.max_script_size, self.setup.max_commands)
            except FileNotFoundError:
                found = None
            except (OSError, UnicodeDecodeError, SieveSyntaxError) as exc:
                log.error("global sieve script %r cannot be used: %s", name, exc)
                found = None
        self._globals[name] = found
        return found

    async def user_script(self, user_id: UserId) -> CompiledScript | None:
        """The user's active script, read in a transaction of its own."""
        found = await run_transaction(
            self.engine, lambda conn: self.read_active(conn, user_id), writes=False
        )
        return self.compiled(user_id, found)

    def compiled(self, user_id: UserId, found: FoundScript) -> CompiledScript | None:
        """The compiled tree of what `read_active` found: from the cache when this
        version was compiled before, else opened (ObjectTampered for a row that does
        not open) and compiled; None for no script or one that does not compile."""
        if found is None:
            return None
        if isinstance(found, str):
            text: str | None = found
            digest = hashlib.sha256(found.encode("utf-8", errors="surrogatepass")).digest()
        else:
            text, digest = None, found.digest
        cached = self._user_scripts.get(user_id)
        if cached is not None and cached[0] == digest:
            self._user_scripts.move_to_end(user_id)
            return cached[1]
        if text is None:
            assert isinstance(found, ActiveScript)  # noqa: S101 - the str case is above
            text = found.open()
        try:
            compiled: CompiledScript | None = _compile(
                text, "active", self.setup.max_script_size, self.setup.max_commands
            )
        except SieveSyntaxError as exc:
            # The line only: the reason may quote the script, which is the user's data.
            log.warning(
                "user id %d: the active sieve script does not compile (line %s); "
                "delivering without it",
                user_id,
                exc.line,
            )
            compiled = None
        self._user_scripts[user_id] = (digest, compiled)
        self._user_scripts.move_to_end(user_id)
        if len(self._user_scripts) > _CACHE_SIZE:
            self._user_scripts.popitem(last=False)
        return compiled

    def scripts(self, user: CompiledScript | None) -> list[CompiledScript]:
        """before, the user's script and after, those that exist, in the order they run."""
        return [s for s in (self.setup.before, user, self.setup.after) if s is not None]

    async def scripts_for(self, user_id: UserId) -> list[CompiledScript]:
        return self.scripts(await self.user_script(user_id))

    async def run(
        self,
        user_id: UserId,
        scripts: list[CompiledScript],
        message: SieveMessage,
        envelope: SieveEnvelope,
    ) -> SieveResult:
        from cryptmail.sieve import run_scripts  # loaded by the first compile (`_compile`)

        settings = self.setup.settings
        needs_loop = any("duplicate" in s.extensions or "include" in s.extensions for s in scripts)
        if not needs_loop:
            return run_scripts(scripts, message, envelope, _Context(self, user_id, None), settings)
        loop = asyncio.get_running_loop()
        context = _Context(self, user_id, loop)
        return await run_calling_back(run_scripts, scripts, message, envelope, context, settings)

    async def remember(self, user_id: UserId, result: SieveResult) -> None:
        """After the copy is stored: the ids duplicate tests saw (RFC 7352 3)."""
        for mark in result.duplicates:
            record = duplicate_record(user_id, mark.handle, mark.unique_id)
            await note_record(self.engine, user_id, record, mark.seconds, extend=mark.last)
