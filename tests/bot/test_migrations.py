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


def _upgrade_0001_with_data(url: str) -> None:
    """A database at 0001 with a Rasa sender's conversation, its messages, feedback and the analytics
    triggers, upgraded to head: nothing is lost, and the sender may then have several conversations
    with only one of them open."""
    from bot.console.analytics_rollup import ensure_triggers
    from bot.db.engine import Database

    upgrade(url, "0001")
    db = Database(url)
    try:
        ensure_triggers(db.engine)  # a database a server has run on has them
        with db.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO conversations (id, token_hash, channel, sender_id, status, mode, state, "
                "customer_metadata, message_count, created_at, updated_at) VALUES ('old-1', 'x', 'rest', 'ann', "
                "'open', 'bot', '{}', '{}', 2, '2026-01-05 10:00:00', '2026-01-05 10:00:00')"))
            conn.execute(sa.text(
                "INSERT INTO messages (conversation_id, seq, role, text, status, created_at) VALUES "
                "('old-1', 1, 'customer', 'Where is my order?', 'complete', '2026-01-05 10:00:00'), "
                "('old-1', 2, 'bot', 'Let me check.', 'complete', '2026-01-05 10:00:01')"))
            conn.execute(sa.text(
                "INSERT INTO feedback (message_id, conversation_id, rating, created_at) "
                "SELECT id, 'old-1', 1, '2026-01-05 10:00:02' FROM messages WHERE seq = 2"))
            triggers_before = _triggers(conn)
    finally:
        db.dispose()
    upgrade(url)
    assert current(url) == "0002"
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM messages WHERE conversation_id = 'old-1'")).scalar() == 2
            assert conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar() == 1
            assert _triggers(conn) == triggers_before
            indexes = {ix["name"]: ix for ix in sa.inspect(conn).get_indexes("conversations")}
            assert indexes["uq_conversations_open_sender"]["unique"]
        ended = ("INSERT INTO conversations (id, token_hash, channel, sender_id, status, mode, state, customer_metadata,"
                 " message_count, created_at, updated_at) VALUES (:id, 'x', 'rest', 'ann', :status, 'bot', '{}', '{}',"
                 " 0, '2026-02-01 10:00:00', '2026-02-01 10:00:00')")
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE conversations SET status = 'ended' WHERE id = 'old-1'"))
            conn.execute(sa.text(ended), {"id": "new-1", "status": "open"})
            conn.execute(sa.text(ended), {"id": "old-2", "status": "ended"})
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:  # a second open one
            conn.execute(sa.text(ended), {"id": "new-2", "status": "open"})
    finally:
        db.dispose()


def _triggers(conn) -> set[str]:
    if conn.dialect.name == "sqlite":
        return set(conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger'")).scalars())
    return set(conn.execute(sa.text("SELECT tgrelid::regclass || ' ' || tgname FROM pg_trigger "
                                     "WHERE NOT tgisinternal")).scalars())


def test_upgrade_keeps_conversations_messages_and_triggers_sqlite(sqlite_url):
    _upgrade_0001_with_data(sqlite_url)


@pytest.mark.postgres
def test_upgrade_keeps_conversations_messages_and_triggers_postgres(pg_url):
    _upgrade_0001_with_data(pg_url)


def test_commands_and_serve_refuse_a_schema_older_than_this_version(tmp_path, monkeypatch, capsys):
    """QA: `serve` ran on a database left at 0001 and answered a Rasa sender's message after "/restart"
    with a 500 (0001 allows one conversation per sender); nothing told the operator to upgrade."""
    from bot.cli import main
    from bot.db.migrate import known_revisions
    from bot.server import serve
    from bot.settings import get_settings
    from knowledge.errors import ConfigurationError

    monkeypatch.setenv("HYBRIDESK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HYBRIDESK_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        (tmp_path / "data").mkdir()
        upgrade(settings.resolved_database_url, known_revisions()[0])
        assert main(["users", "list"]) == 2
        err = capsys.readouterr().err
        assert "schema_outdated" in err and "hybridesk db upgrade" in err and known_revisions()[-1] in err
        with pytest.raises(ConfigurationError) as refused:
            serve(settings, host="127.0.0.1", port=0)
        assert refused.value.code == "schema_outdated"
        assert main(["db", "upgrade"]) == 0
        capsys.readouterr()
        assert main(["users", "list"]) == 0
        # a schema this version does not know (a newer hybridesk upgraded it) is named as such
        engine = make_engine(settings.resolved_database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        engine.dispose()
        assert main(["users", "list"]) == 2
        assert "schema_unknown" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


@pytest.mark.postgres
def test_a_postgres_scheme_url_as_hosting_services_give_it_works(pg_url):
    """``postgres://`` was refused as "Unsupported database backend 'postgres'"."""
    url = "postgres://" + pg_url.split("://", 1)[1]
    engine = make_engine(url)
    try:
        assert engine.dialect.name == "postgresql" and engine.url.drivername == "postgresql+psycopg"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
