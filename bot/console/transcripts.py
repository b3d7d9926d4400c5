"""Transcript review: search and filter conversations (keyset-paginated), and one conversation in full.

The list is ordered by ``created_at`` (indexed) and paged by a keyset cursor, so page 500 costs
what page 1 costs. Every filter is an ``id IN (SELECT conversation_id ...)`` over an indexed
column (message intent/tone, the full-text index, feedback, corrections), which both SQLite and
PostgreSQL turn into one set lookup per candidate row.
"""

from __future__ import annotations

import base64
import binascii
import time as time_
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.console.search_index import ensure_search_index, matching_conversations, matching_rowids, terms
from bot.db.models import Conversation, Correction, Feedback, Message, ModelCall, User
from knowledge.errors import InvalidInput, NotFound

PAGE_SIZE = 50
OUT_OF_SCOPE_INTENT = "out_of_scope"  # the NLU's intent for out-of-scope messages


@dataclass
class TranscriptFilter:
    """What the agent asked for; empty fields do not filter."""

    q: str = ""
    date_from: date | None = None
    date_to: date | None = None
    intent: str = ""
    tone: str = ""
    adapter: str = ""
    thumbs_down: bool = False
    flagged: bool = False
    handed_off: bool = False
    out_of_scope: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TranscriptFilter:
        def day(name: str) -> date | None:
            raw = (params.get(name) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError as exc:
                raise InvalidInput(f"{name} {raw!r} is not a date; use YYYY-MM-DD.", code="bad_date",
                                   field=name) from exc

        def flag(name: str) -> bool:
            return str(params.get(name) or "").lower() in ("1", "true", "on", "yes")

        def text(name: str, limit: int = 64) -> str:
            return str(params.get(name) or "").strip()[:limit]

        start, end = day("from"), day("to")
        if start and end and end < start:  # (not silently nothing)
            raise InvalidInput(f"The end date ({end}) is before the start date ({start}).", code="bad_date",
                               field="to")
        return cls(q=text("q", 200), date_from=start, date_to=end, intent=text("intent"),
                   tone=text("tone", 16), adapter=text("adapter"), thumbs_down=flag("thumbs_down"),
                   flagged=flag("flagged"), handed_off=flag("handed_off"), out_of_scope=flag("out_of_scope"))

    def to_params(self) -> dict[str, str]:
        """Query-string form (for links to the next page)."""
        out = {"q": self.q, "intent": self.intent, "tone": self.tone, "adapter": self.adapter,
               "from": self.date_from.isoformat() if self.date_from else "",
               "to": self.date_to.isoformat() if self.date_to else ""}
        for name in ("thumbs_down", "flagged", "handed_off", "out_of_scope"):
            if getattr(self, name):
                out[name] = "1"
        return {k: v for k, v in out.items() if v}


@dataclass
class TranscriptRow:
    id: str
    created_at: datetime
    last_message_at: datetime | None
    channel: str
    mode: str
    status: str
    message_count: int
    handoff_reason: str | None
    satisfaction: int | None
    preview: str = ""
    thumbs_down: int = 0
    flagged: int = 0


@dataclass
class TranscriptPage:
    rows: list[TranscriptRow]
    next_cursor: str | None
    filters: TranscriptFilter = field(default_factory=TranscriptFilter)
    #: the page before this one starts after this cursor (None: this is the first page)
    prev_cursor: str | None = None


def encode_cursor(created_at: datetime, conv_id: str) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{conv_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, conv_id = raw.split("|", 1)
        when = datetime.fromisoformat(ts)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)), conv_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("The page cursor is not valid; start again from the first page.",
                           code="bad_cursor") from exc


# A filter matching at most this many rows is applied as a set the query starts from; a denser
# one is checked row by row while walking conversations newest first (the page fills quickly).
SMALL_SET = 3000


def _capped_count(session: Session, ids: sa.Select) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(ids.limit(SMALL_SET + 1).subquery())) or 0)


def _unindexed(session: Session, column: Any) -> Any:
    """``column || ''`` on SQLite: stops the planner from driving the query from that column's index
    (it must walk conversations by date and probe, which is what a dense filter wants)."""
    return column.op("||")("") if session.get_bind().dialect.name == "sqlite" else column


def _message_filter(session: Session, column: Any, value: Any) -> sa.ColumnElement[bool]:
    if _capped_count(session, sa.select(Message.id).where(column == value)) <= SMALL_SET:
        return Conversation.id.in_(sa.select(Message.conversation_id).where(column == value))
    return sa.exists().where(Message.conversation_id == Conversation.id, _unindexed(session, column) == value)


def _set_filter(session: Session, conversation_ids: sa.Select) -> sa.ColumnElement[bool]:
    if _capped_count(session, conversation_ids) <= SMALL_SET:
        return Conversation.id.in_(conversation_ids)
    return _unindexed(session, Conversation.id).in_(conversation_ids)


COMMON_TTL_S = 300.0
_COMMON_WORDS: dict[tuple[str, str], float] = {}  # (database, search words) -> remembered until


def _text_filter(session: Session, q: str) -> sa.ColumnElement[bool] | None:
    bind = session.get_bind()
    ensure_search_index(bind)  # type: ignore[arg-type]
    dialect = bind.dialect.name
    matches = matching_conversations(dialect, q)
    if matches is None:
        return None
    if not terms(q):  # punctuation only: a LIKE over message text (no word index to ask)
        return _set_filter(session, matches)
    if dialect != "sqlite":
        # PostgreSQL guesses 0.5% of messages match any word, so for a rare (or absent) word it walks
        # conversations newest first and computes to_tsvector on every message: 21 s with no match
        # at 100k conversations. A capped count through the GIN index tells rare from common; a rare
        # word's conversations are fetched first and passed as a list.
        # The capped fetch costs ~70 ms for a common word, so "common" is remembered for a while
        # (a common word stays common; a rare one is re-checked each time, its matches can grow).
        key = (str(bind.url), " ".join(terms(q)))
        if _COMMON_WORDS.get(key, 0.0) < time_.monotonic():
            few = session.scalars(matches.limit(SMALL_SET + 1)).all()  # one per matching message
            if len(few) <= SMALL_SET:
                return Conversation.id.in_(sorted(set(few))) if few else sa.false()
            if len(_COMMON_WORDS) > 1000:
                _COMMON_WORDS.clear()
            _COMMON_WORDS[key] = time_.monotonic() + COMMON_TTL_S
        return Conversation.id.in_(matches)
    rowids = matching_rowids(q)
    if _capped_count(session, rowids) <= SMALL_SET:
        return Conversation.id.in_(matches)
    # a common word: probe each conversation's messages against the (row ids only) match list
    return sa.exists().where(Message.conversation_id == Conversation.id, Message.id.in_(rowids))


def _filtered(session: Session, flt: TranscriptFilter) -> sa.Select:
    stmt = sa.select(Conversation)
    if flt.date_from:
        stmt = stmt.where(Conversation.created_at >= datetime.combine(flt.date_from, time.min, tzinfo=UTC))
    if flt.date_to:
        end = datetime.combine(flt.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        stmt = stmt.where(Conversation.created_at < end)
    if flt.q:
        text_cond = _text_filter(session, flt.q)
        if text_cond is not None:
            stmt = stmt.where(text_cond)
    if flt.intent:
        stmt = stmt.where(_message_filter(session, Message.intent, flt.intent))
    if flt.tone:
        stmt = stmt.where(_message_filter(session, Message.tone, flt.tone))
    if flt.adapter:
        stmt = stmt.where(_message_filter(session, Message.adapter_id, flt.adapter))
    if flt.out_of_scope:
        stmt = stmt.where(_message_filter(session, Message.intent, OUT_OF_SCOPE_INTENT))
    if flt.thumbs_down:
        stmt = stmt.where(_set_filter(session, sa.select(Feedback.conversation_id).where(Feedback.rating < 0)))
    if flt.flagged:
        stmt = stmt.where(_set_filter(session, sa.select(Message.conversation_id).join(
            Correction, Correction.message_id == Message.id)))
    if flt.handed_off:
        stmt = stmt.where(sa.or_(Conversation.handoff_reason.is_not(None), Conversation.mode != "bot"))
    return stmt


def search_transcripts(session: Session, flt: TranscriptFilter, cursor: str | None = None,
                       limit: int = PAGE_SIZE, before: str | None = None) -> TranscriptPage:
    """One page of conversations matching ``flt``, newest first: the first, the one after ``cursor``
    (older conversations), or the one before ``before`` (newer; the first page when fewer are left)."""
    stmt = _filtered(session, flt)
    if before:
        when, conv_id = decode_cursor(before)
        newer = stmt.where(Conversation.created_at >= when, sa.or_(
            Conversation.created_at > when, sa.and_(Conversation.created_at == when, Conversation.id > conv_id)))
        convs = list(session.scalars(
            newer.order_by(Conversation.created_at.asc(), Conversation.id.asc()).limit(limit + 1)))
        if len(convs) <= limit:  # nothing newer than a page away: that is the first page
            return search_transcripts(session, flt, None, limit)
        convs = convs[:limit][::-1]
        page = _page(session, convs, flt, more=True)
        page.prev_cursor = encode_cursor(convs[0].created_at, convs[0].id)
        return page
    if cursor:
        when, conv_id = decode_cursor(cursor)
        stmt = stmt.where(Conversation.created_at <= when, sa.or_(
            Conversation.created_at < when, sa.and_(Conversation.created_at == when, Conversation.id < conv_id)))
    stmt = stmt.order_by(Conversation.created_at.desc(), Conversation.id.desc()).limit(limit + 1)
    convs = list(session.scalars(stmt))
    more = len(convs) > limit
    page = _page(session, convs[:limit], flt, more)
    if cursor and page.rows:
        page.prev_cursor = encode_cursor(convs[0].created_at, convs[0].id)
    return page


def _page(session: Session, convs: list[Conversation], flt: TranscriptFilter, more: bool) -> TranscriptPage:
    rows = [TranscriptRow(c.id, c.created_at, c.last_message_at, c.channel, c.mode, c.status, c.message_count,
                          c.handoff_reason, c.satisfaction) for c in convs]
    _decorate(session, rows)
    next_cursor = encode_cursor(convs[-1].created_at, convs[-1].id) if more and convs else None
    return TranscriptPage(rows, next_cursor, flt)


def _decorate(session: Session, rows: list[TranscriptRow]) -> None:
    """Preview (first customer message), thumbs-down and correction counts for one page."""
    ids = [r.id for r in rows]
    if not ids:
        return
    by_id = {r.id: r for r in rows}
    first = (sa.select(Message.conversation_id, sa.func.min(Message.seq).label("seq"))
             .where(Message.conversation_id.in_(ids), Message.role == "customer")
             .group_by(Message.conversation_id).subquery())
    for conv_id, text in session.execute(
            sa.select(Message.conversation_id, Message.text)
            .join(first, sa.and_(first.c.conversation_id == Message.conversation_id, first.c.seq == Message.seq))):
        by_id[conv_id].preview = text[:160]
    for conv_id, n in session.execute(
            # through messages: feedback.message_id is indexed, feedback.conversation_id is not
            sa.select(Message.conversation_id, sa.func.count()).join(Feedback, Feedback.message_id == Message.id)
            .where(Message.conversation_id.in_(ids), Feedback.rating < 0).group_by(Message.conversation_id)):
        by_id[conv_id].thumbs_down = n
    for conv_id, n in session.execute(
            sa.select(Message.conversation_id, sa.func.count()).join(Correction, Correction.message_id == Message.id)
            .where(Message.conversation_id.in_(ids)).group_by(Message.conversation_id)):
        by_id[conv_id].flagged = n


_choices_cache: dict[str, tuple[float, dict[str, list[str]]]] = {}
CHOICES_TTL_S = 300.0


def filter_choices(session: Session) -> dict[str, list[str]]:
    """Values offered in the filter drop-downs (a DISTINCT over 600k messages costs ~0.3 s on
    SQLite, so it is cached per process for a few minutes; a new intent shows up after that)."""
    import time as _time

    key = str(session.get_bind().url)
    hit = _choices_cache.get(key)
    if hit is not None and _time.monotonic() - hit[0] < CHOICES_TTL_S:
        return hit[1]

    def distinct(col: Any) -> list[str]:
        return list(session.scalars(sa.select(col).where(col.is_not(None)).distinct().order_by(col).limit(300)))

    choices = {"intents": distinct(Message.intent), "tones": distinct(Message.tone)}
    _choices_cache[key] = (_time.monotonic(), choices)
    return choices


@dataclass
class MessageView:
    message: Message
    feedback: list[Feedback]
    corrections: list[Correction]
    model_calls: list[ModelCall]
    author: str | None = None


@dataclass
class ConversationView:
    conversation: Conversation
    messages: list[MessageView]
    holder: User | None


def conversation_view(session: Session, conversation_id: str) -> ConversationView:
    """A conversation with every message, its metadata, feedback, corrections and model calls."""
    conv = session.get(Conversation, conversation_id) if len(conversation_id) <= 64 else None
    if conv is None:
        raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
    messages = list(session.scalars(
        sa.select(Message).where(Message.conversation_id == conv.id).order_by(Message.seq)))
    ids = [m.id for m in messages]
    feedback: dict[int, list[Feedback]] = defaultdict(list)
    corrections: dict[int, list[Correction]] = defaultdict(list)
    calls: dict[int, list[ModelCall]] = defaultdict(list)
    for f in session.scalars(sa.select(Feedback).join(Message, Message.id == Feedback.message_id)
                             .where(Message.conversation_id == conv.id)):
        feedback[f.message_id].append(f)
    if ids:
        for c in session.scalars(sa.select(Correction).where(Correction.message_id.in_(ids)).order_by(Correction.id)):
            corrections[c.message_id].append(c)
        for mc in session.scalars(sa.select(ModelCall).where(ModelCall.conversation_id == conv.id)
                                  .order_by(ModelCall.id)):
            if mc.message_id is not None:
                calls[mc.message_id].append(mc)
    user_ids = {m.author_user_id for m in messages if m.author_user_id} | {
        c.user_id for cs in corrections.values() for c in cs if c.user_id}
    if conv.held_by_user_id:
        user_ids.add(conv.held_by_user_id)
    users = {u.id: u for u in session.scalars(sa.select(User).where(User.id.in_(user_ids)))} if user_ids else {}
    views = [MessageView(m, feedback.get(m.id, []), corrections.get(m.id, []), calls.get(m.id, []),
                         users[m.author_user_id].display_name if m.author_user_id in users else None)
             for m in messages]
    return ConversationView(conv, views, users.get(conv.held_by_user_id) if conv.held_by_user_id else None)


def messages_after(session: Session, conversation_id: str, after_seq: int) -> list[dict[str, Any]]:
    """New messages of a conversation as plain dicts (the console's live view polls this)."""
    rows = session.execute(sa.select(Message, User.display_name).outerjoin(User, User.id == Message.author_user_id)
                           .where(Message.conversation_id == conversation_id, Message.seq > after_seq,
                                  Message.status.in_(["complete", "received"])).order_by(Message.seq).limit(200))
    return [{"id": m.id, "seq": m.seq, "role": m.role, "text": m.text, "intent": m.intent, "tone": m.tone,
             "author": author, "created_at": m.created_at.isoformat() if m.created_at else None}
            for m, author in rows]


@dataclass
class Waiting:
    """A customer waiting for a person."""

    id: str
    since: datetime
    reason: str | None
    last_customer_message: str | None
    #: when the customer last wrote (or asked for a person, if later)
    last_active: datetime | None = None
    #: quiet for longer than the idle limit: they may have left (listed after the others)
    stale: bool = False


def waiting_for_a_person(session: Any, limit: int = 50, idle_minutes: float = 0,
                         connected: frozenset[str] = frozenset()) -> list[Waiting]:
    """Open conversations whose customer asked for (or was offered) a person and nobody took yet,
    longest waiting first; those whose customer has written nothing for longer than ``idle_minutes``
    (0: no limit) after the others, marked ``stale``, unless their widget is ``connected`` (its page
    open): a customer who closed the page stays in the queue (nothing tells the server they left), but
    does not stay at its top."""
    rows = session.execute(
        sa.select(Conversation.id, Conversation.state, Conversation.handoff_reason, Conversation.updated_at)
        .where(Conversation.mode == "handoff_requested", Conversation.status == "open")
        .order_by(Conversation.updated_at).limit(500)).all()
    out = []
    for cid, state, reason, updated in rows:
        try:
            since = datetime.fromisoformat(str((state or {}).get("handoff_at")))
        except ValueError:  # queued before the time was kept
            since = updated
        out.append(Waiting(cid, since if since.tzinfo else since.replace(tzinfo=UTC), reason, None))
    if not out:
        return out
    last: dict[str, tuple[str, datetime]] = {}
    for cid, text, at in session.execute(
            sa.select(Message.conversation_id, Message.text, Message.created_at)
            .where(Message.conversation_id.in_([w.id for w in out]), Message.role == "customer")
            .order_by(Message.id)).all():
        last[cid] = (text, at if at is None or at.tzinfo else at.replace(tzinfo=UTC))
    now = datetime.now(UTC)
    full = []
    for w in out:
        text, at = last.get(w.id, ("", None))
        active = max(w.since, at) if at else w.since
        stale = bool(idle_minutes) and now - active > timedelta(minutes=idle_minutes) and w.id not in connected
        full.append(Waiting(w.id, w.since, w.reason, (text or "")[:160] or None, active, stale))
    full.sort(key=lambda w: (w.stale, w.since))
    return full[:limit]
