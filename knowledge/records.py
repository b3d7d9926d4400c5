"""Plain records the store hands out (no session attached), and the SQL for "in force at T"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from knowledge.chunking import content_hash
from knowledge.db import STATUS_PUBLISHED, STATUS_RETIRED, KbFact, KbRevision
from knowledge.ingest import ParsedDocument


@dataclass(frozen=True)
class Fact:
    """A key fact in force: ``value`` (string) with unit, aliases and where it is defined."""

    name: str
    value: str
    unit: str | None
    description: str | None
    placeholders: tuple[str, ...]
    document_id: str
    revision: int
    anchor: str | None
    effective_from: datetime | None = None
    effective_until: datetime | None = None

    def citation(self) -> dict[str, Any]:
        return {"document_id": self.document_id, "revision": self.revision, "anchor": self.anchor}


@dataclass(frozen=True)
class RevisionInfo:
    """A revision as seen outside the store (plain data, no session attached)."""

    id: int
    document_id: str
    number: int
    status: str
    title: str
    effective_from: datetime | None
    effective_until: datetime | None
    author: str
    change_note: str | None
    content_hash: str
    created_at: datetime
    published_at: datetime | None
    retired_at: datetime | None
    tags: tuple[str, ...] = ()
    audience: str | None = None
    content: str = ""
    facts: tuple[Fact, ...] = ()

    def to_dict(self, *, with_content: bool = False) -> dict[str, Any]:
        d = {
            "document_id": self.document_id,
            "revision": self.number,
            "status": self.status,
            "title": self.title,
            "effective_from": _iso(self.effective_from),
            "effective_until": _iso(self.effective_until),
            "author": self.author,
            "change_note": self.change_note,
            "content_hash": self.content_hash,
            "created_at": _iso(self.created_at),
            "published_at": _iso(self.published_at),
            "retired_at": _iso(self.retired_at),
            "tags": list(self.tags),
            "audience": self.audience,
        }
        if with_content:
            d["content"] = self.content
            d["facts"] = [f.__dict__ | {"placeholders": list(f.placeholders)} for f in self.facts]
        return d


@dataclass(frozen=True)
class DocumentSummary:
    document_id: str
    title: str
    latest_revision: int
    latest_status: str
    in_force_revision: int | None
    tags: tuple[str, ...] = field(default=())
    latest_effective_from: datetime | None = None
    latest_effective_until: datetime | None = None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _fact(row: KbFact, rev: KbRevision) -> Fact:
    return Fact(
        name=row.name,
        value=row.value,
        unit=row.unit,
        description=row.description,
        placeholders=tuple(row.placeholders or ()),
        document_id=row.document_id,
        revision=row.revision_number,
        anchor=row.anchor,
        effective_from=rev.effective_from,
        effective_until=rev.effective_until,
    )


def _info(rev: KbRevision, *, with_content: bool = True) -> RevisionInfo:
    return RevisionInfo(
        id=rev.id,
        document_id=rev.document_id,
        number=rev.number,
        status=rev.status,
        title=rev.title,
        effective_from=rev.effective_from,
        effective_until=rev.effective_until,
        author=rev.author,
        change_note=rev.change_note,
        content_hash=rev.content_hash,
        created_at=rev.created_at,
        published_at=rev.published_at,
        retired_at=rev.retired_at,
        tags=tuple(rev.tags or ()),
        audience=rev.audience,
        content=rev.content if with_content else "",
        facts=tuple(_fact(f, rev) for f in rev.facts) if with_content else (),
    )


def in_force_condition(rev: Any, at: datetime) -> sa.ColumnElement[bool]:
    """SQL condition: ``rev`` is a candidate at ``at`` (published once, inside its date window)."""
    return sa.and_(
        rev.status.in_([STATUS_PUBLISHED, STATUS_RETIRED]),
        rev.effective_from.is_not(None),
        rev.effective_from <= at,
        sa.or_(rev.effective_until.is_(None), rev.effective_until > at),
    )


def in_force_statement(at: datetime) -> sa.Select[Any]:
    """One query: the revision of each document that is in force at ``at``."""
    newer = aliased(KbRevision)
    superseded = (
        sa.select(newer.id)
        .where(
            newer.document_id == KbRevision.document_id,
            in_force_condition(newer, at),
            sa.or_(
                newer.effective_from > KbRevision.effective_from,
                sa.and_(newer.effective_from == KbRevision.effective_from, newer.number > KbRevision.number),
            ),
        )
        .exists()
    )
    return (
        sa.select(KbRevision)
        .where(in_force_condition(KbRevision, at), ~superseded)
        .order_by(KbRevision.document_id)
    )


def normalize_slot(slot: str) -> str:
    """``"{{ Customer_Support  phone-number }}" -> "customer support phone number"``."""
    s = slot.strip().strip("{}").strip().lower()
    return re.sub(r"[\s_\-]+", " ", s).strip()


def revision_hash(doc: ParsedDocument) -> str:
    """Hash of everything a revision says (text, title, dates, tags, facts)."""
    facts = [(f.name, f.value, f.unit, f.description, tuple(f.placeholders)) for f in doc.facts]
    key = repr(
        (
            doc.title,
            doc.body,
            _iso(doc.effective_from),
            _iso(doc.effective_until),
            doc.tags,
            doc.audience,
            facts,
        )
    )
    return content_hash(key)
