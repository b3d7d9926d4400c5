"""Tables owned by the knowledge package (prefix ``kb_``), portable across SQLite and PostgreSQL.

Nothing here is ever overwritten: an edit is a new row in ``kb_revisions`` with its own
chunks and facts.  ``kb_state`` holds one generation counter that every write bumps in the
same transaction, so an index (possibly in another process) can tell cheaply whether it is
behind the database.

The pgvector backend keeps its embeddings in a separate table, ``kb_chunk_embeddings``,
created by :mod:`knowledge.pgvector_index` (PostgreSQL only; it is not part of this metadata
so SQLite deployments never see a ``vector`` column).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

STATUS_DRAFT = "draft"
STATUS_PUBLISHED = "published"
STATUS_RETIRED = "retired"
STATUSES = (STATUS_DRAFT, STATUS_PUBLISHED, STATUS_RETIRED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends.

    SQLite has no time zone type and drops the offset, so we store naive UTC there and attach
    UTC again when reading; PostgreSQL gets a real ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class KnowledgeBase(DeclarativeBase):
    """Declarative base of the knowledge package (its own MetaData, combined by alembic/env.py)."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON(), list[Any]: sa.JSON()}


class KbDocument(KnowledgeBase):
    """A policy document: a stable id (slug) whose content lives in its revisions."""

    __tablename__ = "kb_documents"

    id: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    source: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    revisions: Mapped[list[KbRevision]] = relationship(
        back_populates="document", order_by="KbRevision.number", lazy="selectin"
    )


class KbRevision(KnowledgeBase):
    """One immutable version of a document's content; only status and dates change later."""

    __tablename__ = "kb_revisions"
    __table_args__ = (
        sa.UniqueConstraint("document_id", "number", name="uq_kb_revisions_document_number"),
        sa.CheckConstraint("status IN ('draft', 'published', 'retired')", name="status"),
        sa.Index("ix_kb_revisions_status_effective", "status", "effective_from"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default=STATUS_DRAFT)
    title: Mapped[str] = mapped_column(sa.String(300))
    content: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    content_format: Mapped[str] = mapped_column(sa.String(16), default="markdown")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    audience: Mapped[str | None] = mapped_column(sa.String(60))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    effective_from: Mapped[datetime | None] = mapped_column()
    effective_until: Mapped[datetime | None] = mapped_column()
    author: Mapped[str] = mapped_column(sa.String(120))
    change_note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column()
    retired_at: Mapped[datetime | None] = mapped_column()

    document: Mapped[KbDocument] = relationship(back_populates="revisions")
    chunks: Mapped[list[KbChunk]] = relationship(
        back_populates="revision", order_by="KbChunk.ordinal", lazy="selectin"
    )
    facts: Mapped[list[KbFact]] = relationship(back_populates="revision", lazy="selectin")


class KbChunk(KnowledgeBase):
    """A heading-aware section of a revision, as indexed (``text`` already carries the title path)."""

    __tablename__ = "kb_chunks"
    __table_args__ = (sa.UniqueConstraint("revision_id", "ordinal", name="uq_kb_chunks_revision_ordinal"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    revision_id: Mapped[int] = mapped_column(sa.ForeignKey("kb_revisions.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[str] = mapped_column(sa.String(120), index=True)
    revision_number: Mapped[int] = mapped_column(sa.Integer)
    ordinal: Mapped[int] = mapped_column(sa.Integer)
    heading_path: Mapped[list[Any]] = mapped_column(default=list)
    anchor: Mapped[str] = mapped_column(sa.String(300))
    body: Mapped[str] = mapped_column(sa.Text)
    text: Mapped[str] = mapped_column(sa.Text)
    content_hash: Mapped[str] = mapped_column(sa.String(64), index=True)

    revision: Mapped[KbRevision] = relationship(back_populates="chunks")


class KbFact(KnowledgeBase):
    """A structured key fact defined by one revision (e.g. ``return_window_days = 30``)."""

    __tablename__ = "kb_facts"
    __table_args__ = (sa.UniqueConstraint("revision_id", "name", name="uq_kb_facts_revision_name"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    revision_id: Mapped[int] = mapped_column(sa.ForeignKey("kb_revisions.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[str] = mapped_column(sa.String(120))
    revision_number: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.String(120), index=True)
    value: Mapped[str] = mapped_column(sa.Text)
    unit: Mapped[str | None] = mapped_column(sa.String(60))
    description: Mapped[str | None] = mapped_column(sa.Text)
    placeholders: Mapped[list[Any]] = mapped_column(default=list)
    anchor: Mapped[str | None] = mapped_column(sa.String(300))

    revision: Mapped[KbRevision] = relationship(back_populates="facts")


class KbState(KnowledgeBase):
    """A single row whose ``generation`` grows with every KB write (cheap staleness check)."""

    __tablename__ = "kb_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
