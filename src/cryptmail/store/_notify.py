"""In-process change notifications: delivery tells IDLE sessions of the same user.

Sessions also poll the database now and then (IDLE every 2 s, see imap), so a change
made by another process (the CLI, another node of a scale-out setup) is seen too, a
poll later. Cross-node push (e.g. PostgreSQL LISTEN/NOTIFY) is not built.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class ChangeBus:
    def __init__(self) -> None:
        self._queues: dict[int, set[asyncio.Queue[int]]] = defaultdict(set)

    def subscribe(self, user_id: int) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=64)
        self._queues[user_id].add(queue)
        return queue

    def unsubscribe(self, user_id: int, queue: asyncio.Queue[int]) -> None:
        queues = self._queues.get(user_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[user_id]

    def publish(self, user_id: int, mailbox_id: int) -> None:
        for queue in list(self._queues.get(user_id, ())):
            try:
                queue.put_nowait(mailbox_id)
            except asyncio.QueueFull:
                pass  # the session is far behind; it rescans on its next wake-up anyway
