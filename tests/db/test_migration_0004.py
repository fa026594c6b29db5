"""Migration 0004 starts each user's UIDVALIDITY counter at the highest value they have."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from cryptmail.db import create_engine, upgrade


async def test_0004_starts_the_counter_at_the_users_highest_uidvalidity(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(engine, "0003")
        now = datetime(2026, 1, 1)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO virtual_domains (id, name) VALUES (1, 'e.org')"))
            for user in (1, 2, 3):
                await conn.execute(
                    text(
                        "INSERT INTO virtual_users (id, domain_id, email, password, quota, crypt) "
                        "VALUES (:id, 1, :email, '{PLAIN}x', 0, 0)"
                    ),
                    {"id": user, "email": f"u{user}@e.org"},
                )
            for box, (user, uidvalidity) in enumerate([(1, 500), (1, 900), (2, 700)], 1):
                await conn.execute(
                    text(
                        "INSERT INTO cm_mailboxes (id, user_id, uidvalidity, uidnext, "
                        "highest_modseq, created_at) VALUES (:id, :user, :uv, 1, 1, :now)"
                    ),
                    {"id": box, "user": user, "uv": uidvalidity, "now": now},
                )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT user_id, last_value FROM cm_uidvalidity ORDER BY user_id")
                )
            ).all()
        assert [tuple(r) for r in rows] == [(1, 900), (2, 700)]
    finally:
        await engine.dispose()
