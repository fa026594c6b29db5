"""The schema check without Alembic (`schema_is_current`) agrees with Alembic."""

from __future__ import annotations

from pathlib import Path

from cryptmail.db import create_engine, head_revision, listed_head, schema_is_current, upgrade


def test_the_listed_head_is_alembics_head() -> None:
    assert listed_head() is not None
    assert listed_head() == head_revision()


async def test_current_only_at_the_head(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert not await schema_is_current(engine)  # no alembic_version table yet
        head = head_revision()
        assert head is not None
        await upgrade(engine, f"{head}-1")
        assert not await schema_is_current(engine)
        await upgrade(engine)
        assert await schema_is_current(engine)
    finally:
        await engine.dispose()
