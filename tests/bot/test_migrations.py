"""Migrations: empty database -> head -> no autogenerate diff -> base, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.db.engine import make_engine
from bot.db.metadata import all_metadata
from bot.db.migrate import current, downgrade, upgrade


def _roundtrip(url: str) -> None:
    upgrade(url)
    assert current(url) is not None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            for md in all_metadata():
                assert set(md.tables) <= tables
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, all_metadata())
            assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()
    downgrade(url, "base")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            left = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
            assert left == set()
    finally:
        engine.dispose()
    upgrade(url)  # and back up again: downgrades are clean enough to repeat


def test_migrations_sqlite(sqlite_url):
    _roundtrip(sqlite_url)


@pytest.mark.postgres
def test_migrations_postgres(pg_url):
    _roundtrip(pg_url)
    # PostgreSQL enforces VARCHAR lengths (SQLite does not): the longest state values must fit
    from bot.db.engine import Database
    from bot.db.models import Conversation

    db = Database(pg_url)
    try:
        with db.unit_of_work() as session:
            session.add(Conversation(id="c-longest-mode", token_hash="x" * 64, mode="handoff_requested"))
        with db.unit_of_work() as session:
            assert session.get(Conversation, "c-longest-mode").mode == "handoff_requested"
    finally:
        db.engine.dispose()
