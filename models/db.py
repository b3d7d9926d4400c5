"""Tables owned by the ``models`` package (its own declarative base and MetaData).

``alembic/env.py`` combines ``ModelsBase.metadata`` with the other packages' metadata; the
migration itself is written by the lead. Types are portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: explicit constraint names keep migrations identical on SQLite and PostgreSQL
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _now() -> datetime:
    return datetime.now(UTC)


class ModelsBase(DeclarativeBase):
    """Declarative base of the ``models`` package."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ImportedTicket(ModelsBase):
    """A past support ticket (customer message -> agent reply), PII-scrubbed, ready for training.

    ``data_hash`` is the SHA-256 of the normalised message, reply and intent; it de-duplicates
    re-imports and feeds the data hash recorded in an adapter's metadata.
    """

    __tablename__ = "imported_tickets"
    __table_args__ = (
        UniqueConstraint("source", "data_hash", name="uq_imported_tickets_source_hash"),
        Index("ix_imported_tickets_intent", "intent"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False)  # bitext|csv|jsonl|sample|corrections
    external_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    customer_message: Mapped[str] = mapped_column(Text, nullable=False)
    intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agent_reply: Mapped[str] = mapped_column(Text, nullable=False)
    tone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    scrubbed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_now)
    data_hash: Mapped[str] = mapped_column(String(64), nullable=False)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<ImportedTicket {self.id} {self.source}:{self.external_id} intent={self.intent}>"
