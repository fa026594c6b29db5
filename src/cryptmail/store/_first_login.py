"""Running staged imports at the user's first successful login, in the background.

A login (IMAP, POP3, web) calls `FirstLoginImports.after_login` with the account it
unlocked and the password it checked. One query claims the user's staged imports
(`_staged.claim_staged`: of several logins at once, here or on another node, one wins);
the login then answers at once and a task of this process does the work:

1. the password unlocks the Dovecot user keys of each claimed Maildir (PBKDF2, as
   Dovecot does, off the event loop); the password is dropped right after, whatever
   the outcome. It is never written anywhere: it lives in this task's memory only
   until the Dovecot keys are open, as it lives in the login's;
   (mail sealed already by `import maildir --at-first-login` with a global key or a
   plain Maildir, see `_sealed_import`, needs no Dovecot key: any login places it);
2. `import_maildir` (or `place_sealed`) runs with those keys and the account (the
   account's public key seals, its data key indexes), beating the row's heartbeat and progress every
   `_BEAT_S` seconds; the unlocked keys stay in this task's memory until it ends.

Every login through `after_login` also files the user's messages that Sieve filed
into folders of their own while nobody held the key (`filing`, store/_filing.py),
before the login answers: POP3 then lists INBOX without them, IMAP finds them filed.

A password that does not open the Dovecot keys (an app password, or a password changed
since Dovecot) puts the row back to `staged`: the next login with the right password
imports it. A server that stops puts running rows back to `staged`; one that dies
leaves them `running` with an old heartbeat, and the next login after
`auth.import_stale_s` claims and resumes them (the import journal skips what is in).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.concurrency import run_blocking
from cryptmail.crypto.dovecot import DovecotKeyring, keyring_from_attributes, parse_attributes
from cryptmail.db import UserId
from cryptmail.errors import CryptmailError, DovecotWrongPassword, StoreError
from cryptmail.keys import AccountKey, UnlockedAccount, open_private_keys
from cryptmail.secret import Password
from cryptmail.store._filing import FilingNotes
from cryptmail.store._ids import BlobId
from cryptmail.store._import import import_maildir
from cryptmail.store._sealed_import import place_sealed
from cryptmail.store._staged import (
    DONE,
    FAILED,
    RUNNING,
    STAGED,
    ClaimedImport,
    StagedSource,
    beat_staged,
    claim_staged,
    finish_staged,
    open_staged,
)
from cryptmail.store.blobs import BlobStore
from cryptmail.tasks import cancel_and_wait, finish_then_cancel

log = logging.getLogger(__name__)

_BEAT_S: Final = 1.0


@dataclass(frozen=True)
class ImportNotice:
    """An import of the user's old mail is under way: `done` of `total` messages."""

    done: int
    total: int


def _unlock_keyring(source: StagedSource, password: Password) -> DovecotKeyring:
    """The Dovecot folder keys the password opens (an empty keyring for a plain Maildir).
    Raises DovecotWrongPassword, DovecotFormatError, OSError."""
    attributes = source.attributes
    if attributes is None and (source.root / "dovecot-attributes").is_file():
        attributes = source.root / "dovecot-attributes"
    if attributes is None:
        return DovecotKeyring()
    return keyring_from_attributes(parse_attributes(Path(attributes).read_bytes()), password)


@dataclass
class _Run:
    task: asyncio.Task[None] | None
    done: int
    total: int
    job_ids: tuple[int, ...]


class FirstLoginImports:
    """The staged imports this process runs, one task per user at most."""

    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        *,
        stale_after_s: float,
        filing: FilingNotes | None = None,
    ) -> None:
        self._engine = engine
        self.filing = filing if filing is not None else FilingNotes(engine)
        self._blobs = blobs
        self._stale_after = timedelta(seconds=stale_after_s)
        self._runs: dict[UserId, _Run] = {}
        self._locks: dict[UserId, asyncio.Lock] = {}

    def progress(self, user_id: UserId) -> ImportNotice | None:
        """The user's import running in this process, if any."""
        run = self._runs.get(user_id)
        return None if run is None else ImportNotice(run.done, run.total)

    async def after_login(
        self, account: UnlockedAccount, password: Password
    ) -> ImportNotice | None:
        """Start the user's staged imports, if any, without waiting for them; what is
        under way (here or on another node), or None. Never raises for the import's
        sake: a login must not fail because its old mail cannot be imported."""
        user_id = account.user.id
        await self.filing.apply(account)  # never raises; one indexed read when none wait
        if user_id in self._runs:
            return self.progress(user_id)
        try:
            rows = await open_staged(self._engine, user_id)
            if not rows:
                return None  # nearly every login: one indexed read
            async with self._locks.setdefault(user_id, asyncio.Lock()):
                if user_id in self._runs:
                    return self.progress(user_id)
                claimed = await claim_staged(self._engine, rows, self._stale_after)
                if claimed:
                    self._start(account, password, claimed)
                    return self.progress(user_id)
            # Running on another node (or here, claimed by a login that just won).
            return await self.running(user_id)
        except (CryptmailError, OSError):
            log.exception("first-login import of user id %d could not start", user_id)
            return None

    async def running(self, user_id: UserId) -> ImportNotice | None:
        """The user's import under way, here or on another node; None if none runs."""
        if user_id in self._runs:
            return self.progress(user_id)
        running = [r for r in await open_staged(self._engine, user_id) if r.state == RUNNING]
        if not running:
            return None
        return ImportNotice(
            sum(r.done_messages for r in running), sum(r.total_messages for r in running)
        )

    async def after_key_login(self, opened: AccountKey, password: Password) -> None:
        """`after_login` for a login that opened the account key only (SASL): the
        private keys are unsealed only when an import is staged."""
        try:
            if not await open_staged(self._engine, opened.user.id):
                return
            account = await open_private_keys(self._engine, opened)
        except (CryptmailError, OSError):
            log.exception("first-login import of user id %d could not start", opened.user.id)
            return
        await self.after_login(account, password)

    def _start(
        self, account: UnlockedAccount, password: Password, claimed: list[ClaimedImport]
    ) -> None:
        run = _Run(None, 0, sum(c.total_messages for c in claimed), tuple(c.id for c in claimed))
        self._runs[account.user.id] = run
        run.task = asyncio.create_task(
            self._run(account, password, claimed, run),
            name=f"first-login import of user id {account.user.id}",
        )

    async def close(self) -> None:
        """Stop the running imports (their rows go back to `staged`). Cancelled
        meanwhile, it still waits until they have ended and their rows are written
        (short writes), then raises: nothing of theirs runs on after the stop."""
        runs = dict(self._runs)
        await finish_then_cancel(cancel_and_wait(*(r.task for r in runs.values())))
        # A task cancelled before it began never ran its own clean-up.
        unstarted = [
            job_id
            for user_id, run in runs.items()
            if self._runs.pop(user_id, None) is not None
            for job_id in run.job_ids
        ]
        if unstarted:
            await finish_then_cancel(_stage_again(self._engine, unstarted))

    async def wait(self, user_id: UserId) -> None:
        """Until the user's import in this process ends (for tests and the CLI). A
        cancelled wait leaves the import running."""
        run = self._runs.get(user_id)
        if run is not None and run.task is not None:
            await asyncio.wait({run.task})

    async def _run(
        self,
        account: UnlockedAccount,
        password: Password | None,
        claimed: list[ClaimedImport],
        run: _Run,
    ) -> None:
        user_id = account.user.id
        ready: list[tuple[ClaimedImport, DovecotKeyring | None]] = []
        unfinished = {job.id for job in claimed}
        try:
            assert password is not None  # noqa: S101 - given by after_login
            for job in claimed:
                if job.source.manifest is not None:
                    ready.append((job, None))  # sealed already: any login places it
                    continue
                try:
                    keyring = await run_blocking(_unlock_keyring, job.source, password)
                except DovecotWrongPassword:
                    log.info(
                        "import #%d of user id %d: this login's password does not open the "
                        "Dovecot keys; it waits for a login with the Dovecot password",
                        job.id,
                        user_id,
                    )
                    unfinished.discard(job.id)
                    await finish_staged(self._engine, job.id, STAGED)
                    run.total -= job.total_messages
                    continue
                except (CryptmailError, OSError) as exc:
                    unfinished.discard(job.id)
                    await self._failed(job, exc, 0)
                    run.total -= job.total_messages
                    continue
                ready.append((job, keyring))
            password = None  # the Dovecot keys are open: the password is not needed
            base = 0
            for job, opened in ready:
                await self._import(account, job, opened, run, base)
                unfinished.discard(job.id)
                base += job.total_messages
        except BaseException:
            # Stopped (the server shuts down) or broken: what did not end waits for the
            # next login, as after a crash but without waiting for the heartbeat to age.
            # Written to its end within this task even if the stop comes again, never
            # shielded into a task of its own that would outlive the stop and the engine
            # (cut short by a crash, the row stays running and resumes once stale).
            if unfinished:
                await finish_then_cancel(_stage_again(self._engine, sorted(unfinished)))
            raise
        finally:
            password = None
            self._runs.pop(user_id, None)

    async def _import(
        self,
        account: UnlockedAccount,
        job: ClaimedImport,
        keyring: DovecotKeyring | None,
        run: _Run,
        base: int,
    ) -> None:
        done = failed = 0
        last_beat = time.monotonic()
        try:
            # A file that does not decrypt is left out and counted (its folder number and
            # name go to the log): the user should not wait for the rest because of it,
            # and the admin still has it in the Dovecot tree.
            if keyring is None and job.source.manifest is not None:
                manifest = BlobId(bytes.fromhex(job.source.manifest))
                steps = place_sealed(self._engine, self._blobs, account, job.id, manifest)
            else:
                steps = import_maildir(
                    self._engine,
                    self._blobs,
                    account,
                    job.source.root,
                    keyring or DovecotKeyring(),
                    skip_unreadable=True,
                )
            async for progress in steps:
                done, failed = progress.done_messages, progress.failed
                run.done = base + done
                if time.monotonic() - last_beat >= _BEAT_S:
                    await beat_staged(self._engine, job.id, done)
                    last_beat = time.monotonic()
        except (CryptmailError, OSError) as exc:
            await self._failed(job, exc, done)
            return
        except Exception as exc:
            # Unexpected (a database gone away): `_run` stages it again.
            log.error("import #%d stopped by %s; staged again", job.id, type(exc).__name__)
            raise
        note = None
        if failed:
            note = f"{failed} file(s) did not decrypt and were left out; see the serve log"
        await finish_staged(self._engine, job.id, DONE, note, done_messages=done)
        log.info("import #%d of user id %d done: %d messages", job.id, account.user.id, done)

    async def _failed(self, job: ClaimedImport, exc: BaseException, done: int) -> None:
        # A StoreError names a file by folder number and base name, never a folder;
        # others (OSError, a broken uidlist) may name a path: only their type is kept.
        error = str(exc) if isinstance(exc, StoreError) else type(exc).__name__
        log.error("import #%d failed: %s", job.id, error)
        await finish_staged(self._engine, job.id, FAILED, error, done_messages=done)


async def _stage_again(engine: AsyncEngine, job_ids: list[int]) -> None:
    """Put stopped imports back to `staged`: the next login resumes them."""
    for job_id in job_ids:
        await finish_staged(engine, job_id, STAGED)
