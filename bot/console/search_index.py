"""Full-text search over message text: SQLite FTS5 or a PostgreSQL GIN index.

SQLite gets an external-content FTS5 table (``messages_fts``, Porter stemming) kept in sync by
triggers, so messages written by any code path are searchable at once. PostgreSQL gets a GIN
expression index on ``to_tsvector('english', text)``. Both are created idempotently by
:func:`ensure_search_index` (the first search of a process); a migration can run the same
statements (:data:`SQLITE_DDL`, :data:`POSTGRES_DDL`).
"""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.db.engine import once_per_engine
from bot.db.models import Message

log = logging.getLogger(__name__)

SQLITE_DDL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5("
    "text, conversation_id UNINDEXED, content='messages', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, text, conversation_id) VALUES (new.id, new.text, new.conversation_id); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text, conversation_id) "
    "VALUES ('delete', old.id, old.text, old.conversation_id); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_au AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text, conversation_id) "
    "VALUES ('delete', old.id, old.text, old.conversation_id); "
    "INSERT INTO messages_fts(rowid, text, conversation_id) VALUES (new.id, new.text, new.conversation_id); END",
]
SQLITE_TABLES = ["messages_fts", "messages_fts_data", "messages_fts_idx", "messages_fts_docsize",
                 "messages_fts_config"]
POSTGRES_DDL = [
    "CREATE INDEX IF NOT EXISTS ix_messages_text_fts ON messages USING gin (to_tsvector('english', text))",
]
MAX_TERMS = 8

def ensure_search_index(engine: Engine) -> None:
    """Create the search index for ``engine`` once per process (a no-op when it exists)."""
    once_per_engine(engine, "transcript_search", _create_search_index)


def _create_search_index(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            existed = conn.execute(sa.text(
                "SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'")).first() is not None
            for stmt in SQLITE_DDL:
                conn.execute(sa.text(stmt))
            if not existed:  # index what was written before the table existed
                conn.execute(sa.text("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"))
                log.info("built the transcript search index (SQLite FTS5)")
    elif engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for stmt in POSTGRES_DDL:
                conn.execute(sa.text(stmt))


def terms(query: str) -> list[str]:
    """The words of a search box entry (letters and digits only, as both indexes split them; at most a few)."""
    return re.findall(r"[^\W_]+", query.lower())[:MAX_TERMS]


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE ... ESCAPE '\\'``: the wildcards ``%`` and ``_`` in ``text`` match themselves."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts_expression(words: list[str]) -> str:
    # each word quoted (no FTS syntax from users); the last one also matches as a prefix
    expr = " ".join(f'"{w}"' for w in words[:-1])
    last = words[-1]
    return (f'{expr} "{last}"*' if len(last) >= 3 else f'{expr} "{last}"').strip()


_FTS = sa.table("messages_fts", sa.column("conversation_id"), sa.column("rowid"))


def matching_rowids(query: str) -> sa.Select:
    """SQLite only: ``SELECT rowid`` (= message id) of messages matching ``query`` (no content reads)."""
    return sa.select(_FTS.c.rowid).where(sa.text("messages_fts MATCH :fts_q").bindparams(
        fts_q=_fts_expression(terms(query) or ["_"])))


def matching_conversations(dialect: str, query: str) -> sa.Select | None:
    """``SELECT conversation_id`` of messages matching every word of ``query`` (None: nothing to search).

    An entry with no words (``"``, ``*``, ``%``) is searched as typed, without the word index."""
    words = terms(query)
    if not words:
        if not query.strip():
            return None
        return sa.select(Message.conversation_id).where(Message.text.ilike(like_pattern(query.strip()), escape="\\"))
    if dialect == "sqlite":
        return sa.select(_FTS.c.conversation_id).where(sa.text("messages_fts MATCH :fts_q").bindparams(
            fts_q=_fts_expression(words)))
    if dialect == "postgresql":
        vector = sa.func.to_tsvector(sa.literal_column("'english'"), Message.text)
        tsq = sa.func.plainto_tsquery(sa.literal_column("'english'"), " ".join(words))
        return sa.select(Message.conversation_id).where(vector.op("@@")(tsq))
    like = [Message.text.ilike(like_pattern(w), escape="\\") for w in words]
    return sa.select(Message.conversation_id).where(*like)
