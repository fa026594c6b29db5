"""Migration 0005 (credential generation) starts existing accounts at generation 0."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from cryptmail.db import create_engine, upgrade


async def test_existing_accounts_start_at_generation_zero(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(engine, "0004")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO virtual_domains (id, name) VALUES (1, 'e.org')"))
            await conn.execute(
                text(
                    "INSERT INTO virtual_users (id, domain_id, email, password, quota, crypt) "
                    "VALUES (1, 1, 'a@e.org', '{PLAIN}x', 0, 2)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO cm_accounts (user_id, account_uuid, created_at) "
                    "VALUES (1, :uuid, :now)"
                ),
                {"uuid": b"u" * 16, "now": datetime(2026, 1, 1)},
            )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT user_id, credential_generation FROM cm_accounts"))
            ).all()
        assert [tuple(r) for r in rows] == [(1, 0)]
    finally:
        await engine.dispose()
