"""IDLE (RFC 2177): push EXISTS, EXPUNGE and flag changes until the client says DONE.

A delivery in this process wakes the session through the ChangeBus at once, and so
does a change made by another process (the CLI, another node) once `serve`'s change
feed hears of it (serve/_events.py). Besides, the session reads the mailbox's highest
modseq every `context.idle_poll_s` (one small query): every POLL_S (2 s) without the
feed, every `events.safety_poll_s` with it.

A session in IDLE holds the user's key: when it hears a delivery into the hidden
holding mailbox it files the waiting messages (store/_filing.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from cryptmail.imap.server._errors import CommandFailed
from cryptmail.imap.wire._requests import Idle
from cryptmail.imap.wire._response import tagged
from cryptmail.store import MailboxId
from cryptmail.tasks import cancel_and_wait

if TYPE_CHECKING:
    from cryptmail.imap.server._session import Session

POLL_S: Final = 2.0
"""IDLE's poll interval when nothing else brings other processes' changes."""


async def idle(session: Session, command: Idle) -> bytes:
    account = session.user_account
    bus = session.context.bus
    await session.send(b"+ idling\r\n")
    await session.drain()
    queue = bus.subscribe(account.user.id)
    line_task = asyncio.create_task(session.read_client_line())
    waiter: asyncio.Task[MailboxId] | None = None
    try:
        while True:
            if session.notify is not None:
                # RFC 5465 4: in IDLE, exactly the events NOTIFY asked for.
                await session.notify.deliver(session)
                await session.drain()
            elif session.selected is not None:
                await session.selected.send_updates(session)
                await session.drain()
            waiter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait(
                {line_task, waiter},
                timeout=session.context.idle_poll_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            heard = [waiter.result()] if waiter in done else []
            # Not `with suppress(CancelledError): await waiter`: that would swallow a stop
            # arriving meanwhile, and the session would idle on past its listener.
            await cancel_and_wait(waiter)
            waiter = None
            heard += queue.drain()  # ends with RESCAN if some were coalesced
            if heard and session.context.imports is not None:
                # A delivery into the holding mailbox: file it now, while the key is here
                # (its target folder's sessions then hear the move).
                await session.context.imports.filing.heard(account, heard)
            if line_task in done:
                if line_task.result().strip().upper() != b"DONE":
                    raise CommandFailed("Expected DONE.", status="BAD")
                break
    finally:
        bus.unsubscribe(account.user.id, queue)
        # A stop (the session cancelled in the wait above) leaves both running otherwise.
        await cancel_and_wait(line_task, waiter)
    return tagged(command.tag, "OK", "Idle completed.")
