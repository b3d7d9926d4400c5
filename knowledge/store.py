"""The versioned knowledge store: documents, immutable revisions, facts, "what is in force at T".

Semantics (one rule, used by SQL here and by the indexes in memory):

* a revision can be in force only if it was published (``published`` or later ``retired``)
  and ``effective_from <= T < effective_until`` (no ``effective_until`` = open ended);
* among a document's candidates at T, the one with the latest ``effective_from`` wins, ties
  going to the higher revision number.  So a scheduled revision takes over at its date, and
  an edit published "now" replaces the current text at once;
* retiring sets ``effective_until`` to the retirement time, so a retired policy is never in
  force again, while history queries for earlier times still see it.

Content is never overwritten: an edit is a new revision; only status and dates change.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer, noload, sessionmaker

from knowledge.chunking import anchor_containing, chunk_markdown
from knowledge.db import (
    STATUS_DRAFT,
    STATUS_PUBLISHED,
    STATUS_RETIRED,
    KbChunk,
    KbDocument,
    KbFact,
    KbRevision,
    KbState,
    as_utc,
    utcnow,
)
from knowledge.errors import Conflict, InvalidInput, NotFound
from knowledge.ingest import (
    FactSpec,
    ParsedDocument,
    _check_id,
    describe_contradictions,
    describe_facts,
    facts_contradicted,
    facts_not_stated,
)
from knowledge.records import (  # noqa: F401 - Fact & co. are part of this module's API
    DocumentSummary,
    Fact,
    RevisionInfo,
    _fact,
    _info,
    _iso,
    in_force_condition,
    in_force_statement,
    normalize_slot,
    revision_hash,
)

MAX_CONTENT_CHARS = 500_000


#: a time this much in the past still counts as now (a form's clock shows minutes, and takes a while)
PAST_TOLERANCE = timedelta(minutes=5)


def _not_in_the_past(at: datetime | None, field: str) -> None:
    if at is not None and as_utc(at) < utcnow() - PAST_TOLERANCE:
        raise InvalidInput(
            f"{field} is in the past ({as_utc(at):%Y-%m-%d %H:%M} UTC): what was in force then is what customers "
            "were told. Leave it empty for now, or choose a later time.", code="date_in_past", field=field)


class KnowledgeStore:
    """Versioned documents over a SQLAlchemy session factory (or an engine)."""

    def __init__(self, session_factory: Callable[[], Session] | Engine) -> None:
        if isinstance(session_factory, Engine):
            session_factory = sessionmaker(session_factory, expire_on_commit=False)
        self._sf = session_factory

    # ------------------------------------------------------------ plumbing

    def _session(self) -> Session:
        return self._sf()

    def _write(self, fn: Callable[[Session], Any]) -> Any:
        """Run ``fn`` in one transaction that also bumps the generation counter."""
        with self._session() as s:
            try:
                result = fn(s)
                self._bump(s)
                s.commit()
                return result
            except BaseException:
                s.rollback()
                raise

    @staticmethod
    def _bump(s: Session) -> None:
        res = s.execute(
            sa.update(KbState)
            .where(KbState.id == 1)
            .values(generation=KbState.generation + 1, updated_at=utcnow())
        )
        if res.rowcount == 0:  # type: ignore[attr-defined]
            try:
                with s.begin_nested():
                    s.add(KbState(id=1, generation=1))
            except IntegrityError:  # a concurrent writer created the row first
                s.execute(sa.update(KbState).where(KbState.id == 1).values(generation=KbState.generation + 1))

    def generation(self) -> int:
        """Grows with every write; indexes compare it to know whether they are behind."""
        with self._session() as s:
            return int(s.scalar(sa.select(KbState.generation).where(KbState.id == 1)) or 0)

    @staticmethod
    def _doc(s: Session, doc_id: str) -> KbDocument:
        doc = s.get(KbDocument, doc_id)
        if doc is None:
            raise NotFound(
                f"No document with id {doc_id!r}; `hybridesk kb list` shows the ids.", code="unknown_document"
            )
        return doc

    @staticmethod
    def _rev(s: Session, doc_id: str, number: int | None) -> KbRevision:
        q = sa.select(KbRevision).where(KbRevision.document_id == doc_id)
        q = (
            q.where(KbRevision.number == number)
            if number is not None
            else q.order_by(KbRevision.number.desc())
        )
        rev = s.scalars(q.limit(1)).first()
        if rev is None:
            raise NotFound(
                f"Document {doc_id!r} has no revision {number}; `hybridesk kb history {doc_id}` lists them.",
                code="unknown_revision",
            )
        return rev

    @staticmethod
    def _new_revision(s: Session, doc: KbDocument, parsed: ParsedDocument, author: str) -> KbRevision:
        if len(parsed.body) > MAX_CONTENT_CHARS:
            raise InvalidInput(f"Document {parsed.id!r} is too long (limit {MAX_CONTENT_CHARS} characters).")
        if not author or not author.strip():
            raise InvalidInput("Every revision needs an author.", code="missing_author")
        number = (
            s.scalar(sa.select(sa.func.max(KbRevision.number)).where(KbRevision.document_id == doc.id)) or 0
        ) + 1
        rev = KbRevision(
            document_id=doc.id,
            number=number,
            status=STATUS_DRAFT,
            title=parsed.title,
            content=parsed.body,
            content_hash=revision_hash(parsed),
            content_format=parsed.content_format,
            tags=list(parsed.tags),
            audience=parsed.audience,
            meta={"source": parsed.source} if parsed.source else {},
            effective_from=parsed.effective_from,
            effective_until=parsed.effective_until,
            author=author.strip()[:120],  # (the column's size; an e-mail address may be up to 254)
            change_note=parsed.change_note,
            created_at=utcnow(),
        )
        s.add(rev)
        s.flush()
        specs = chunk_markdown(parsed.body, parsed.title)
        for c in specs:
            s.add(
                KbChunk(
                    revision_id=rev.id,
                    document_id=doc.id,
                    revision_number=number,
                    ordinal=c.ordinal,
                    heading_path=list(c.heading_path),
                    anchor=c.anchor,
                    body=c.body,
                    text=c.text,
                    content_hash=c.content_hash,
                )
            )
        for f in parsed.facts:
            s.add(
                KbFact(
                    revision_id=rev.id,
                    document_id=doc.id,
                    revision_number=number,
                    name=f.name,
                    value=f.value,
                    unit=f.unit,
                    description=f.description,
                    placeholders=list(f.placeholders),
                    anchor=anchor_containing(specs, f.value),
                )
            )
        doc.title = parsed.title
        doc.updated_at = utcnow()
        s.flush()
        s.refresh(rev)
        return rev

    def _publish(self, s: Session, rev: KbRevision, at: datetime | None) -> None:
        if rev.status == STATUS_RETIRED:
            raise Conflict(
                f"Revision {rev.number} of {rev.document_id!r} was retired; add a new revision to bring it back.",
                code="revision_retired",
            )
        if missing := facts_not_stated(rev.content, rev.facts):
            raise InvalidInput(
                f"Revision {rev.number} of {rev.document_id!r} does not state these facts in its text: "
                f"{describe_facts(missing)}. The bot tells customers a fact's value and cites the page, so the two "
                "must agree: write the value in the text or change the fact.", code="fact_not_in_text", field="facts")
        if contradicted := facts_contradicted(rev.content, rev.facts):
            raise InvalidInput(
                f"Revision {rev.number} of {rev.document_id!r} contradicts its own facts: "
                f"{describe_contradictions(contradicted)}. The bot tells customers the fact's value and cites the "
                "page, so the text must not give another figure for it: correct the text or the fact.",
                code="fact_contradicted", field="body")
        now = utcnow()
        when = as_utc(at) if at is not None else (rev.effective_from or now)
        if at is None and when < now - PAST_TOLERANCE and s.scalar(sa.select(KbRevision.id).where(
                KbRevision.document_id == rev.document_id, KbRevision.id != rev.id,
                KbRevision.status.in_((STATUS_PUBLISHED, STATUS_RETIRED))).limit(1)) is not None:
            # a change to a document customers were already told about starts now: a start date in the
            # past ("effective_from: 2026-01-01" kept in a re-imported file) would rewrite what was in
            # force then. (A document's first revision may start in the past: the history it brings.)
            when = now
        if rev.effective_until is not None and rev.effective_until <= when:
            raise InvalidInput("effective_until must be after the publication time.", code="bad_date")
        # the revision in force wins while it started later: one starting before it would never be in force
        later = s.scalars(sa.select(KbRevision).where(
            KbRevision.document_id == rev.document_id, KbRevision.id != rev.id,
            KbRevision.status == STATUS_PUBLISHED, KbRevision.effective_from > when,
            KbRevision.effective_from <= now).limit(1)).first()
        if later is not None:
            raise Conflict(
                f"Revision {rev.number} would take effect at {when:%Y-%m-%d %H:%M} UTC, before revision {later.number}, "
                f"in force since {as_utc(later.effective_from):%Y-%m-%d %H:%M} UTC: it would never be in force. Publish "
                "it now (leave the date empty) or later.", code="never_in_force")
        self._check_fact_owner(s, rev, now)
        rev.status = STATUS_PUBLISHED
        rev.effective_from = when
        rev.published_at = rev.published_at or now
        # a retirement still to come holds for the document: a revision published before it retires with it,
        # and cancelling the retirement keeps this one (QA: the edit's end date was the retirement's, and
        # cancelling it put the revision before the edit back in force for good from that time)
        pending = s.scalars(sa.select(KbRevision.effective_until).where(
            KbRevision.document_id == rev.document_id, KbRevision.id != rev.id,
            KbRevision.status == STATUS_RETIRED, KbRevision.effective_until > max(when, now))).all()
        if pending:
            retire_at = max(as_utc(t) for t in pending)
            own = as_utc(rev.effective_until) if rev.effective_until is not None else None
            if own is None or own >= retire_at:
                rev.meta = dict(rev.meta) | {"until_before_retire": own.isoformat() if own else None}
                rev.status = STATUS_RETIRED
                rev.retired_at = now
                rev.effective_until = retire_at
        s.get(KbDocument, rev.document_id).updated_at = now  # type: ignore[union-attr]

    @staticmethod
    def _check_fact_owner(s: Session, rev: KbRevision, now: datetime) -> None:
        """One document defines a fact: refuse to publish a fact another live document defines."""
        names = [f.name for f in rev.facts]
        if not names:
            return
        clash = s.execute(
            sa.select(KbFact.name, KbFact.document_id)
            .join(KbRevision, KbRevision.id == KbFact.revision_id)
            .where(
                KbFact.name.in_(names),
                KbFact.document_id != rev.document_id,
                KbRevision.status == STATUS_PUBLISHED,
                sa.or_(KbRevision.effective_until.is_(None), KbRevision.effective_until > now),
            )
            .limit(1)
        ).first()
        if clash:
            raise Conflict(
                f"Fact {clash[0]!r} is already defined by document {clash[1]!r}; a fact has one home.",
                code="fact_conflict",
            )

    # ------------------------------------------------------------ writes

    def create_document(
        self, doc: ParsedDocument, *, author: str, publish: bool = False, at: datetime | None = None
    ) -> RevisionInfo:
        """Create a document with its first revision (a draft unless ``publish``)."""
        _check_id(doc.id, "document")

        def work(s: Session) -> RevisionInfo:
            if s.get(KbDocument, doc.id) is not None:
                raise Conflict(
                    f"Document {doc.id!r} already exists; add a revision instead.", code="document_exists"
                )
            d = KbDocument(
                id=doc.id, title=doc.title, source=doc.source, created_at=utcnow(), updated_at=utcnow()
            )
            s.add(d)
            s.flush()
            rev = self._new_revision(s, d, doc, author)
            if publish:
                self._publish(s, rev, at)
            return _info(rev)

        return self._write(work)

    def add_revision(
        self,
        doc_id: str,
        body: str,
        *,
        author: str,
        change_note: str | None = None,
        title: str | None = None,
        effective_from: datetime | None = None,
        effective_until: datetime | None = None,
        tags: Sequence[str] | None = None,
        audience: str | None = None,
        facts: Sequence[FactSpec] | None = None,
        publish: bool = False,
        at: datetime | None = None,
    ) -> RevisionInfo:
        """Add a new revision (the old one is never touched).

        Title, tags, audience and facts default to the previous revision's; pass ``facts=[]``
        to drop them.
        """
        if not body or not body.strip():
            raise InvalidInput("A revision needs some text.", code="empty_content")

        def work(s: Session) -> RevisionInfo:
            d = self._doc(s, doc_id)
            prev = self._rev(s, doc_id, None)
            parsed = ParsedDocument(
                id=doc_id,
                title=title or prev.title,
                body=body.strip(),
                effective_from=effective_from,
                effective_until=effective_until,
                tags=list(tags) if tags is not None else list(prev.tags or []),
                audience=audience if audience is not None else prev.audience,
                facts=list(facts)
                if facts is not None
                else [
                    FactSpec(f.name, f.value, f.unit, f.description, list(f.placeholders or []))
                    for f in prev.facts
                ],
                change_note=change_note,
            )
            rev = self._new_revision(s, d, parsed, author)
            if publish:
                self._publish(s, rev, at)
            return _info(rev)

        try:
            return self._write(work)
        except IntegrityError as exc:
            # two editors saved at the same moment: both read revision N and wrote N+1; the second
            # insert meets the unique (document, number) key, and is told so as a sequential stale
            # save is (PostgreSQL, QA: a 500). Any other constraint is not this.
            detail = str(exc.orig)
            if "uq_kb_revisions_document_number" not in detail and "kb_revisions.number" not in detail:
                raise
            latest = self.history(doc_id)[-1]
            raise Conflict(
                f"{doc_id} changed while you were saving: revision {latest.number} was saved by {latest.author} "
                "at the same moment. Your text was not saved; open the latest revision, re-apply your change and "
                "save again.", code="stale_edit", latest_revision=latest.number) from exc

    def import_parsed(self, doc: ParsedDocument, *, author: str, publish: bool = True, restore: bool = False) -> str:
        """Store a parsed file: ``"imported"`` (new id), ``"updated"`` (new revision) or ``"unchanged"``.

        A file is unchanged when the latest revision declaring the same effective date has the
        same content hash, so re-importing a folder (scheduled files included) is idempotent. With
        ``restore`` (an explicit `kb import`), the same file after a console edit or a retirement of the
        document is imported again, and is what is in force; without it (`hybridesk init`, run by every
        `make demo`) an editor's later work is never overridden by the sample files.

        A text or HTML file cannot declare facts: a new revision from one keeps the facts of the
        document's latest revision (``doc.facts`` is set to them), and is kept as a draft like any
        other when its text no longer states their values.
        """

        def work(s: Session) -> str:
            d = s.get(KbDocument, doc.id)
            if d is not None and not doc.facts and doc.content_format in ("text", "html") and d.revisions:
                latest = max(d.revisions, key=lambda r: r.number)
                doc.facts = [FactSpec(f.name, f.value, f.unit, f.description, list(f.placeholders or []))
                             for f in latest.facts]
            h = revision_hash(doc)
            if d is None:
                d = KbDocument(
                    id=doc.id, title=doc.title, source=doc.source, created_at=utcnow(), updated_at=utcnow()
                )
                s.add(d)
                s.flush()
                outcome = "imported"
            else:
                same_date = [
                    r for r in d.revisions if r.meta.get("declared_from") == _iso(doc.effective_from)
                ]
                last = same_date[-1] if same_date else None
                # the same file again is unchanged, unless the document moved on without a file since: an
                # edit in the console (which declares no date) or a retirement; re-importing it restores it
                # (QA: "1 unchanged", and the console's 60 days or the retirement stayed)
                edited_since = restore and last is not None and any(
                    r.number > last.number and "declared_from" not in r.meta for r in d.revisions)
                retired = restore and last is not None and last.status == STATUS_RETIRED \
                    and last.effective_until is not None and as_utc(last.effective_until) <= utcnow()
                if last is not None and last.content_hash == h and not edited_since and not retired:
                    return "unchanged"
                outcome = "updated"
            rev = self._new_revision(s, d, doc, author)
            rev.meta = dict(rev.meta) | {"declared_from": _iso(doc.effective_from)}
            if publish and (facts_not_stated(doc.body, doc.facts) or facts_contradicted(doc.body, doc.facts)):
                return "drafted"  # the bot would state a value the page it cites contradicts
            if publish:
                self._publish(s, rev, None)
            return outcome

        return self._write(work)

    def publish(
        self, doc_id: str, revision: int | None = None, *, at: datetime | None = None
    ) -> RevisionInfo:
        """Publish a revision (default: the latest one), now or from ``at`` (scheduled).

        ``at`` cannot be in the past (a few minutes aside, :data:`PAST_TOLERANCE`): the revision in
        force was what customers were told then.
        """
        _not_in_the_past(at, "publish at")
        if at is not None and as_utc(at) < utcnow():
            at = utcnow()  # a moment ago is now

        def work(s: Session) -> RevisionInfo:
            self._doc(s, doc_id)
            rev = self._rev(s, doc_id, revision)
            if rev.status == STATUS_PUBLISHED and at is None:
                return _info(rev)
            self._publish(s, rev, at)
            s.flush()
            return _info(rev)

        return self._write(work)

    def unschedule(self, doc_id: str, revision: int) -> RevisionInfo:
        """A published revision that has not yet taken effect goes back to draft (its schedule is
        cancelled; what is in force now stays). A revision already in force can only be replaced by a
        new one or retired with its document: refused here (``not_scheduled``)."""

        def work(s: Session) -> RevisionInfo:
            self._doc(s, doc_id)
            rev = self._rev(s, doc_id, revision)
            start = as_utc(rev.effective_from) if rev.effective_from is not None else None
            if rev.status != STATUS_PUBLISHED or start is None or start <= utcnow():
                raise Conflict(f"Revision {revision} of {doc_id!r} is not scheduled; only a revision waiting to take "
                               "effect can be taken back to draft.", code="not_scheduled")
            rev.status = STATUS_DRAFT
            rev.published_at = None
            s.get(KbDocument, doc_id).updated_at = utcnow()  # type: ignore[union-attr]
            s.flush()
            return _info(rev)

        return self._write(work)

    def retire(
        self, doc_id: str, *, at: datetime | None = None, note: str | None = None
    ) -> list[RevisionInfo]:
        """Retire a document from ``at`` (default now): it is never in force after that.

        ``at`` cannot be in the past: replies already quoted and cited what was in force.
        """
        _not_in_the_past(at, "retire at")
        when = max(as_utc(at), utcnow()) if at is not None else utcnow()

        def work(s: Session) -> list[RevisionInfo]:
            d = self._doc(s, doc_id)
            live = [
                r
                for r in d.revisions
                if r.status == STATUS_PUBLISHED and (r.effective_until is None or r.effective_until > when)
            ]
            # a retirement scheduled for later is brought forward (CLI QA B8: "nothing to retire" while
            # the document was still in force)
            later = [r for r in d.revisions if r.status == STATUS_RETIRED and r.effective_until is not None
                     and as_utc(r.effective_until) > when]
            for r in later:
                r.effective_until = when
                if note:
                    r.meta = dict(r.meta) | {"retire_note": note}
            if later and not live:
                d.updated_at = utcnow()
                s.flush()
                return [_info(r, with_content=False) for r in later]
            if not live:
                raise Conflict(
                    f"Document {doc_id!r} has no published revision to retire.", code="nothing_to_retire"
                )
            for r in live:
                # (kept so that a retirement still to come can be cancelled: the end date it replaced)
                before = as_utc(r.effective_until).isoformat() if r.effective_until is not None else None
                r.meta = dict(r.meta) | {"until_before_retire": before} | ({"retire_note": note} if note else {})
                r.status = STATUS_RETIRED
                r.retired_at = utcnow()
                r.effective_until = when
            d.updated_at = utcnow()
            s.flush()
            return [_info(r, with_content=False) for r in live]

        return self._write(work)

    def cancel_retirement(self, doc_id: str) -> list[RevisionInfo]:
        """Cancel a retirement that has not taken effect yet: the revisions it retired are published
        again as they were (their own end date, if they had one, restored). A retirement already in
        effect is history: refused (``not_retiring``); bring the document back with a new revision."""
        now = utcnow()

        def work(s: Session) -> list[RevisionInfo]:
            d = self._doc(s, doc_id)
            pending = [r for r in d.revisions if r.status == STATUS_RETIRED and r.effective_until is not None
                       and as_utc(r.effective_until) > now]
            if not pending:
                raise Conflict(f"Document {doc_id!r} has no retirement waiting to take effect; a retired document "
                               "comes back with a new revision.", code="not_retiring")
            for r in pending:
                meta = dict(r.meta)
                before = meta.pop("until_before_retire", None)
                meta.pop("retire_note", None)
                r.meta = meta
                r.effective_until = datetime.fromisoformat(before) if before else None
                r.status = STATUS_PUBLISHED
                r.retired_at = None
                self._check_fact_owner(s, r, now)
            d.updated_at = now
            s.flush()
            return [_info(r, with_content=False) for r in pending]

        return self._write(work)

    # ------------------------------------------------------------ reads

    def get(self, doc_id: str, revision: int | None = None) -> RevisionInfo:
        """A revision with content and facts (default: the latest revision)."""
        with self._session() as s:
            self._doc(s, doc_id)
            return _info(self._rev(s, doc_id, revision))

    def history(self, doc_id: str) -> list[RevisionInfo]:
        """Every revision of a document, oldest first (without content)."""
        with self._session() as s:
            d = self._doc(s, doc_id)
            return [_info(r, with_content=False) for r in d.revisions]

    def diff(self, doc_id: str, r1: int, r2: int) -> str:
        """Unified diff between two revisions' text."""
        a, b = self.get(doc_id, r1), self.get(doc_id, r2)
        return "".join(
            difflib.unified_diff(
                a.content.splitlines(keepends=True),
                b.content.splitlines(keepends=True),
                fromfile=f"{doc_id}@r{r1}",
                tofile=f"{doc_id}@r{r2}",
            )
        )

    def in_force(self, at: datetime | None = None) -> list[RevisionInfo]:
        """The revision of each document in force at ``at`` (default now): one query."""
        when = as_utc(at) if at is not None else utcnow()
        with self._session() as s:
            return [_info(r) for r in s.scalars(in_force_statement(when))]

    def list(self, *, at: datetime | None = None) -> list[DocumentSummary]:
        """Every document with its latest revision and the revision in force at ``at``."""
        in_force = {r.document_id: r.number for r in self.in_force(at)}
        with self._session() as s:
            docs = s.scalars(sa.select(KbDocument).order_by(KbDocument.id)).all()
            return [
                DocumentSummary(
                    document_id=d.id,
                    title=d.title,
                    latest_revision=d.revisions[-1].number if d.revisions else 0,
                    latest_status=d.revisions[-1].status if d.revisions else STATUS_DRAFT,
                    in_force_revision=in_force.get(d.id),
                    tags=tuple(d.revisions[-1].tags or ()) if d.revisions else (),
                    latest_effective_from=d.revisions[-1].effective_from if d.revisions else None,
                    latest_effective_until=d.revisions[-1].effective_until if d.revisions else None,
                )
                for d in docs
            ]

    def facts_at(self, at: datetime | None = None) -> dict[str, Fact]:
        """Every fact in force at ``at`` by name."""
        when = as_utc(at) if at is not None else utcnow()
        live_ids = in_force_statement(when).with_only_columns(KbRevision.id).order_by(None)
        with self._session() as s:
            rows = s.execute(
                sa.select(KbFact, KbRevision)
                .join(KbRevision, KbRevision.id == KbFact.revision_id)
                .where(KbFact.revision_id.in_(live_ids))
                .order_by(KbFact.name)
            ).all()
            return {f.name: _fact(f, r) for f, r in rows}

    def superseded_values(self, at: datetime | None = None) -> dict[str, str]:
        """Old value -> value in force, for each fact an earlier published revision of its document gave
        another value ("+31 20 555 0142" -> "+31 20 555 0199"). A value two facts had, or one that is still
        some fact's value now, is left out: it cannot be told apart."""
        when = as_utc(at) if at is not None else utcnow()
        current = self.facts_at(when)
        if not current:
            return {}
        with self._session() as s:
            rows = s.execute(
                sa.select(KbFact.name, KbFact.value)
                .join(KbRevision, KbRevision.id == KbFact.revision_id)
                .where(KbFact.name.in_(list(current)),
                       KbRevision.status.in_((STATUS_PUBLISHED, STATUS_RETIRED)),
                       KbRevision.effective_from <= when)
            ).all()
        now_values = {str(f.value) for f in current.values()}
        out: dict[str, str] = {}
        unclear: set[str] = set()
        for name, value in rows:
            old, new = str(value), str(current[name].value)
            if old == new or old in now_values:
                continue
            if out.get(old, new) != new:
                unclear.add(old)
            out[old] = new
        return {old: new for old, new in out.items() if old not in unclear}

    def fact(self, name: str, at: datetime | None = None) -> Fact | None:
        return self.facts_at(at).get(name)

    def resolve_placeholder(self, slot_name: str, at: datetime | None = None) -> Fact | None:
        """The fact whose placeholder alias (or name) matches ``slot_name``, case/space-insensitive."""
        key = normalize_slot(slot_name)
        if not key:
            return None
        facts = self.facts_at(at)
        for f in facts.values():
            if any(normalize_slot(p) == key for p in f.placeholders):
                return f
        for f in facts.values():
            if normalize_slot(f.name) == key:
                return f
        return None

    # ------------------------------------------------------------ for the indexes

    def indexable_revisions(self) -> list[RevisionInfo]:
        """Every revision that was ever published (the indexes decide what is in force at query time)."""
        with self._session() as s:
            # every sync reads this: skip the revisions' text, chunks and facts (the relationships
            # load eagerly by default, which read the whole KB on each publish)
            revs = s.scalars(
                sa.select(KbRevision)
                .where(KbRevision.status.in_([STATUS_PUBLISHED, STATUS_RETIRED]))
                .options(
                    defer(KbRevision.content),
                    noload(KbRevision.chunks),
                    noload(KbRevision.facts),
                )
            ).all()
            return [_info(r, with_content=False) for r in revs]

    def chunks_for(self, revision_ids: Iterable[int]) -> list[dict[str, Any]]:
        """Chunk rows of the given revisions (plain dicts, ordered by revision and ordinal)."""
        ids = list(revision_ids)
        out: list[dict[str, Any]] = []
        with self._session() as s:
            for i in range(0, len(ids), 500):
                rows = s.scalars(
                    sa.select(KbChunk)
                    .where(KbChunk.revision_id.in_(ids[i : i + 500]))
                    .order_by(KbChunk.revision_id, KbChunk.ordinal)
                ).all()
                out += [
                    {
                        "chunk_id": c.id,
                        "revision_id": c.revision_id,
                        "document_id": c.document_id,
                        "revision": c.revision_number,
                        "ordinal": c.ordinal,
                        "heading_path": list(c.heading_path or []),
                        "anchor": c.anchor,
                        "body": c.body,
                        "text": c.text,
                        "hash": c.content_hash,
                    }
                    for c in rows
                ]
        return out
