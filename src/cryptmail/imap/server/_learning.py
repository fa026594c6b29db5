"""Spam learning: messages a user moves into Junk are handed to a spam filter as spam,
messages moved out of Junk (to anywhere but Trash) as ham, the way ISPmail trains
rspamd through IMAPSieve (`rspamc learn_spam` / `learn_ham`).

The command (`spam.learn_spam`, `spam.learn_ham`: argument lists, never a shell line)
gets the message on standard input, decrypted in memory from the session's unlocked
key: nothing is written to disk, and the plaintext goes only to that command. Learning
runs after the IMAP command answered, at most `spam.max_running` at once; beyond
`spam.max_queued` waiting messages the extras are dropped and logged, and a command that
fails or runs past `spam.timeout_s` is logged (killed, for the latter). It never delays
or fails the COPY or MOVE that caused it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptmail.config import SpamConfig
from cryptmail.errors import CryptmailError
from cryptmail.keys import UnlockedAccount
from cryptmail.store import BlobId, open_blob, read_plaintext
from cryptmail.store.blobs import BlobStore
from cryptmail.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Verdict = Literal["spam", "ham"]


def verdict_for(source_role: str | None, target_role: str | None) -> Verdict | None:
    """What a copy or move from a mailbox of `source_role` to one of `target_role`
    teaches: spam into Junk, ham out of Junk (not into Trash: deleting is no verdict)."""
    if target_role == "junk" and source_role != "junk":
        return "spam"
    if source_role == "junk" and target_role not in ("junk", "trash"):
        return "ham"
    return None


@dataclass(frozen=True, repr=False)
class _Lesson:
    verdict: Verdict
    account: UnlockedAccount
    blob_id: BlobId
    size: int


class SpamLearner:
    """A bounded queue of messages to learn from and the workers that run the command."""

    def __init__(self, config: SpamConfig, blobs: BlobStore) -> None:
        self._config = config
        self._blobs = blobs
        self._queue: asyncio.Queue[_Lesson] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.dropped = 0
        """Messages not learned because the queue was full (for tests and the operator)."""
        self.learned = 0
        """Commands that ran and exited 0."""

    @property
    def enabled(self) -> bool:
        return bool(self._config.learn_spam or self._config.learn_ham)

    def _start(self) -> asyncio.Queue[_Lesson]:
        if self._queue is None:
            self._queue = asyncio.Queue(self._config.max_queued)
            self._workers = [
                asyncio.create_task(self._work(), name=f"spam-learner-{n}")
                for n in range(self._config.max_running)
            ]
        return self._queue

    def submit(
        self,
        verdict: Verdict,
        account: UnlockedAccount,
        messages: Sequence[tuple[BlobId, int]],
    ) -> None:
        """Queue (blob id, size) messages to learn as `verdict`; never waits."""
        command = self._config.learn_spam if verdict == "spam" else self._config.learn_ham
        if not command:
            return
        queue = self._start()
        for blob_id, size in messages:
            if size > self._config.max_message_bytes:
                continue  # a filter would not learn from it either
            try:
                queue.put_nowait(_Lesson(verdict, account, blob_id, size))
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("spam learning: queue full (spam.max_queued); a message was skipped")

    async def join(self) -> None:
        """Until every queued message was handed over (for tests and shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        # Not `suppress(CancelledError)`: a cancellation of the closer itself must go on.
        await cancel_and_wait(*self._workers)
        self._workers = []
        self._queue = None

    async def _work(self) -> None:
        assert self._queue is not None  # noqa: S101 - started with the queue
        while True:
            lesson = await self._queue.get()
            try:
                await self._learn(lesson)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("spam learning failed unexpectedly")
            finally:
                self._queue.task_done()

    async def _learn(self, lesson: _Lesson) -> None:
        try:
            opened = await open_blob(self._blobs, lesson.account, lesson.blob_id)
            message = await read_plaintext(self._blobs, opened)
        except CryptmailError as exc:  # expunged meanwhile, or unreadable
            log.info("spam learning: message not read (%s)", type(exc).__name__)
            return
        argv = self._config.learn_spam if lesson.verdict == "spam" else self._config.learn_ham
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("spam learning: cannot run %s (%s)", argv[0], exc.strerror)
            return
        try:
            async with asyncio.timeout(self._config.timeout_s):
                _out, err = await process.communicate(message)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.warning(
                "spam learning: %s ran past %d s and was killed", argv[0], self._config.timeout_s
            )
            return
        if process.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
            log.warning(
                "spam learning: %s exited %d%s",
                argv[0],
                process.returncode,
                f" ({tail[0][:200]})" if tail else "",
            )
            return
        self.learned += 1
        log.info("spam learning: one message learned as %s", lesson.verdict)
