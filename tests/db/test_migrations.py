"""Migrations that move data: 0003 fills the per-mailbox usage counters from the messages."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from cryptmail.db import create_engine, upgrade


async def test_0003_fills_usage_from_existing_messages(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(engine, "0002")
        now = datetime(2026, 1, 1)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO virtual_domains (id, name) VALUES (1, 'e.org')"))
            await conn.execute(
                text(
                    "INSERT INTO virtual_users (id, domain_id, email, password, quota, crypt) "
                    "VALUES (1, 1, 'a@e.org', '{PLAIN}x', 0, 0)"
                )
            )
            for box in (1, 2, 3):
                await conn.execute(
                    text(
                        "INSERT INTO cm_mailboxes (id, user_id, uidvalidity, uidnext, "
                        "highest_modseq, created_at) VALUES (:id, 1, 1, 10, 1, :now)"
                    ),
                    {"id": box, "now": now},
                )
            for uid, (box, size) in enumerate([(1, 4096), (1, 8192), (2, 65536)], 1):
                await conn.execute(
                    text(
                        "INSERT INTO cm_messages (mailbox_id, uid, modseq, blob_id, sealed, "
                        "size_rounded, internal_date) "
                        "VALUES (:box, :uid, 1, :blob, 0, :size, :now)"
                    ),
                    {"box": box, "uid": uid, "blob": bytes([uid]) * 16, "size": size, "now": now},
                )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT id, used_bytes FROM cm_mailboxes ORDER BY id"))
            ).all()
        assert [tuple(r) for r in rows] == [(1, 12288), (2, 65536), (3, 0)]
    finally:
        await engine.dispose()
