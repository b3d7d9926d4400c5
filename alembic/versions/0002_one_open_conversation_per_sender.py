"""several conversations per Rasa-channel sender, at most one of them open

A sender (REST ``sender``, Socket.IO ``session_id``) starts a new conversation after "/restart",
after their last one ended, or after it sat idle; the ended ones keep their messages. The unique
constraint on (channel, sender_id) becomes a unique index over the open conversations only.

On SQLite the table is rebuilt (batch mode; env.py turns foreign keys off around it, or dropping
the old table would delete every message through ON DELETE CASCADE). SQLite refuses to rename the
rebuilt table while a trigger names a table that is missing at that moment (the analytics
triggers on messages and feedback read ``conversations``), so the triggers that name the table
are set aside and created again, exactly as they were, afterwards.

The downgrade fails if a sender has several conversations by then.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "status = 'open'"


def _set_aside_sqlite_triggers() -> list[str]:
    """Drop the SQLite triggers that name ``conversations``; return their SQL to create them again."""
    if op.get_context().as_sql or op.get_context().dialect.name != "sqlite":
        return []  # (an offline SQL script cannot read them: drop and re-create them around it by hand)
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
        "AND (tbl_name = 'conversations' OR sql LIKE '%conversations%')")).all()
    for name, _sql in rows:
        op.execute(f'DROP TRIGGER IF EXISTS "{name}"')
    return [sql for _name, sql in rows]


def _restore(triggers: list[str]) -> None:
    for sql in triggers:
        op.execute(sql)


def upgrade() -> None:
    triggers = _set_aside_sqlite_triggers()
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_constraint('uq_conversations_channel_sender', type_='unique')
    op.create_index('uq_conversations_open_sender', 'conversations', ['channel', 'sender_id'], unique=True,
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    _restore(triggers)


def downgrade() -> None:
    triggers = _set_aside_sqlite_triggers()
    op.drop_index('uq_conversations_open_sender', table_name='conversations',
                  sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_conversations_channel_sender', ['channel', 'sender_id'])
    _restore(triggers)
