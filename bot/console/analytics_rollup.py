"""The daily analytics roll-up: per-day figures stored once, recomputed only for days that changed.

Every analytics figure belongs to the conversations *created* in the range, so a day's figures
are a function of that day's conversations and of everything later said or rated in them. They
are stored in ``analytics_days`` (:class:`bot.db.models.AnalyticsDay`) and summed over a range
when the page is read; the counts merge exactly, and each day keeps its sorted reply latencies,
so the median and p95 are the exact ones too. The result is identical to
:func:`bot.console.analytics.compute_direct` (tested).

Which days to recompute: database triggers on ``conversations``, ``messages`` and ``feedback``
append the creation day of the conversation they touch to ``analytics_changes``, but only for
conversations created *before today* (today is always computed live, so the common write, to
a conversation of today, costs one primary-key lookup and nothing else). A refresh reads the
log, recomputes the logged days and any day in the range never rolled up, upserts them and
deletes exactly the log rows it read: a change committed meanwhile leaves its own row behind
and is picked up by the next refresh. Triggers see every writer (the chat API, the console,
the CLI, another server process), which an application-level hook would not.

A day is rolled up only once it has been over for ``SETTLE`` (15 minutes): a transaction that
started before midnight, when its conversation was still "today" and so not logged, has
committed by then. Until that, the day is computed live like today.
"""

from __future__ import annotations

import logging
import time as clock
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bot.console.analytics import is_question, question_key
from bot.db.engine import once_per_engine
from bot.db.models import AnalyticsChange, AnalyticsDay, Conversation, Feedback, Message

log = logging.getLogger(__name__)

SETTLE = timedelta(minutes=15)
#: a stored day computed before this time was computed by an older definition of the figures and is
#: computed again when read (the top out-of-scope questions lost "thanks", "!!!" and "ok", then the questions
#: answered from the KB all the same)
DEFINITIONS_SINCE = datetime(2026, 12, 7, 5, 5, tzinfo=UTC)
MAX_SPANS = 100  # day spans recomputed in one pass
DENSE_MIN = 5000  # conversations; fewer are always reached through the conversation index

# -- triggers ---------------------------------------------------------------------------------------
# SQLite stores created_at as naive UTC text ('YYYY-MM-DD HH:MM:SS...'): its first 10 characters are the day
_SQLITE_CHILD = (
    "INSERT INTO analytics_changes(day) SELECT substr(c.created_at, 1, 10) FROM conversations c "
    "WHERE c.id = {ref}.conversation_id AND substr(c.created_at, 1, 10) < date('now');"
)
_SQLITE_CONV = (
    "INSERT INTO analytics_changes(day) SELECT substr({ref}.created_at, 1, 10) "
    "WHERE substr({ref}.created_at, 1, 10) < date('now');"
)
_MESSAGE_COLUMNS = "conversation_id, role, status, intent, out_of_scope, latency_ms, text, policy_reason"
_FEEDBACK_COLUMNS = "conversation_id, message_id, rating"
_CONVERSATION_COLUMNS = "created_at, mode, handoff_reason, held_by_user_id, satisfaction"


def _sqlite_ddl() -> list[str]:
    out = []
    for table, cols in (("messages", _MESSAGE_COLUMNS), ("feedback", _FEEDBACK_COLUMNS)):
        out += [
            f"CREATE TRIGGER IF NOT EXISTS analytics_{table}_ai AFTER INSERT ON {table} BEGIN "
            + _SQLITE_CHILD.format(ref="new") + " END",
            f"CREATE TRIGGER IF NOT EXISTS analytics_{table}_au AFTER UPDATE OF {cols} ON {table} BEGIN "
            + _SQLITE_CHILD.format(ref="new") + " " + _SQLITE_CHILD.format(ref="old") + " END",
            f"CREATE TRIGGER IF NOT EXISTS analytics_{table}_ad AFTER DELETE ON {table} BEGIN "
            + _SQLITE_CHILD.format(ref="old") + " END",
        ]
    out += [
        "CREATE TRIGGER IF NOT EXISTS analytics_conversations_ai AFTER INSERT ON conversations BEGIN "
        + _SQLITE_CONV.format(ref="new") + " END",
        f"CREATE TRIGGER IF NOT EXISTS analytics_conversations_au AFTER UPDATE OF {_CONVERSATION_COLUMNS} "
        "ON conversations BEGIN " + _SQLITE_CONV.format(ref="new") + " " + _SQLITE_CONV.format(ref="old") + " END",
        "CREATE TRIGGER IF NOT EXISTS analytics_conversations_ad AFTER DELETE ON conversations BEGIN "
        + _SQLITE_CONV.format(ref="old") + " END",
    ]
    return out


POSTGRES_DDL = [
    """CREATE OR REPLACE FUNCTION analytics_touch_child() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE today date := (now() AT TIME ZONE 'UTC')::date;
    BEGIN
      IF TG_OP <> 'DELETE' THEN
        INSERT INTO analytics_changes(day) SELECT (c.created_at AT TIME ZONE 'UTC')::date FROM conversations c
          WHERE c.id = NEW.conversation_id AND (c.created_at AT TIME ZONE 'UTC')::date < today;
      END IF;
      IF TG_OP <> 'INSERT' THEN
        INSERT INTO analytics_changes(day) SELECT (c.created_at AT TIME ZONE 'UTC')::date FROM conversations c
          WHERE c.id = OLD.conversation_id AND (c.created_at AT TIME ZONE 'UTC')::date < today;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION analytics_touch_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE today date := (now() AT TIME ZONE 'UTC')::date;
    BEGIN
      IF TG_OP <> 'DELETE' AND (NEW.created_at AT TIME ZONE 'UTC')::date < today THEN
        INSERT INTO analytics_changes(day) VALUES ((NEW.created_at AT TIME ZONE 'UTC')::date);
      END IF;
      IF TG_OP <> 'INSERT' AND (OLD.created_at AT TIME ZONE 'UTC')::date < today THEN
        INSERT INTO analytics_changes(day) VALUES ((OLD.created_at AT TIME ZONE 'UTC')::date);
      END IF;
      RETURN NULL;
    END $$""",
    f"CREATE OR REPLACE TRIGGER analytics_touch AFTER INSERT OR DELETE OR UPDATE OF {_MESSAGE_COLUMNS} "
    "ON messages FOR EACH ROW EXECUTE FUNCTION analytics_touch_child()",
    f"CREATE OR REPLACE TRIGGER analytics_touch AFTER INSERT OR DELETE OR UPDATE OF {_FEEDBACK_COLUMNS} "
    "ON feedback FOR EACH ROW EXECUTE FUNCTION analytics_touch_child()",
    f"CREATE OR REPLACE TRIGGER analytics_touch AFTER INSERT OR DELETE OR UPDATE OF {_CONVERSATION_COLUMNS} "
    "ON conversations FOR EACH ROW EXECUTE FUNCTION analytics_touch_conversation()",
]

def ensure_triggers(engine: Engine) -> None:
    """Create the change-log triggers once per process (idempotent; before any roll-up is read)."""
    once_per_engine(engine, "analytics_triggers", _create_triggers)


def _create_triggers(engine: Engine) -> None:
    statements = _sqlite_ddl() if engine.dialect.name == "sqlite" else POSTGRES_DDL
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(sa.text(stmt))


# -- per-day figures --------------------------------------------------------------------------------
@dataclass
class DayFigures:
    """The analytics of the conversations created on one day (mergeable across days)."""

    conversations: int = 0
    engaged: int = 0
    handed_off: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    intents: dict[str, int] = field(default_factory=dict)
    questions: dict[str, int] = field(default_factory=dict)
    satisfaction: dict[int, int] = field(default_factory=dict)
    latencies: Any = field(default_factory=list)  # bot reply latencies (ms): a list, or a float64 array

    def to_row(self, day: date) -> dict[str, Any]:
        return {"day": day, "conversations": self.conversations, "engaged": self.engaged,
                "handed_off": self.handed_off, "thumbs_up": self.thumbs_up, "thumbs_down": self.thumbs_down,
                "handoff_reasons": self.reasons, "intents": self.intents, "out_of_scope": self.questions,
                "satisfaction": {str(k): v for k, v in self.satisfaction.items()},
                "latencies": np.sort(np.asarray(self.latencies, dtype="<f8")).tobytes(),
                "computed_at": datetime.now(UTC)}

    @classmethod
    def from_row(cls, row: Any) -> DayFigures:
        return cls(row.conversations, row.engaged, row.handed_off, row.thumbs_up, row.thumbs_down,
                   dict(row.handoff_reasons or {}), dict(row.intents or {}), dict(row.out_of_scope or {}),
                   {int(k): int(v) for k, v in (row.satisfaction or {}).items()},
                   np.frombuffer(row.latencies or b"", dtype="<f8"))


def _bounds(first: date, last: date) -> tuple[datetime, datetime]:
    return (datetime.combine(first, time.min, tzinfo=UTC),
            datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC))


def _bump(counts: dict, key: Any, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def day_figures(session: Session, first: date, last: date) -> dict[date, DayFigures]:
    """Figures per day for conversations created in ``[first, last]``, from the raw tables."""
    return spans_figures(session, [(first, last)])


def spans_figures(session: Session, spans: list[tuple[date, date]]) -> dict[date, DayFigures]:
    """Figures per day for conversations created in any of the ``(first, last)`` day spans.

    The same definitions and the same single message pass as ``analytics.compute_direct``,
    kept per day; scattered days (say, ten days that each got a late message) are one pass.
    """
    ranges = []
    for first, last in spans:
        start, end = _bounds(first, last)
        ranges.append(sa.and_(Conversation.created_at >= start, Conversation.created_at < end))
    in_range = sa.or_(*ranges)
    conn = session.connection()  # plain rows: no ORM bookkeeping per row (a third of the time)
    days: dict[date, DayFigures] = {}
    convs: dict[str, tuple[date, Any, Any, Any]] = {}
    for cid, created, reason, mode, held_by, satisfaction in conn.execute(
            sa.select(Conversation.id, Conversation.created_at, Conversation.handoff_reason, Conversation.mode,
                      Conversation.held_by_user_id, Conversation.satisfaction).where(in_range)):
        day = created.astimezone(UTC).date()
        fig = days.setdefault(day, DayFigures())
        fig.conversations += 1
        if satisfaction is not None:
            _bump(fig.satisfaction, int(satisfaction))
        convs[cid] = (day, reason, mode, held_by)
    if not convs:
        return days

    sqlite = session.get_bind().dialect.name == "sqlite"
    plain = (lambda c: c.op("||")("")) if sqlite else (lambda c: c)  # see analytics._plain
    # a wide range scans messages once joined to conversations, a narrow one probes per conversation;
    # the total is only worth counting when the range is not small anyway
    dense = len(convs) > DENSE_MIN and len(convs) > 0.25 * int(
        conn.scalar(sa.select(sa.func.count()).select_from(Conversation)) or 0)
    is_oos = sa.or_(plain(Message.intent) == "out_of_scope", Message.out_of_scope.is_(True))
    asked = sa.and_(plain(Message.role) == "customer", is_oos)
    cols = (Message.conversation_id, Message.role, Message.intent, is_oos, Message.latency_ms, Message.status,
            sa.case((asked, Message.text), else_=None), Message.id, sa.case((asked, Message.policy_reason), else_=None))
    if dense:
        rows = sa.select(*cols).join(Conversation, Conversation.id == Message.conversation_id).where(in_range)
    else:
        rows = sa.select(*cols).where(Message.conversation_id.in_(sa.select(Conversation.id).where(in_range)))
    customers: set[str] = set()
    agents: set[str] = set()
    message_conv: dict[int, str] = {}
    for cid, who, intent, oos, latency, status, text, mid, policy_reason in conn.execute(rows):
        if not dense:
            message_conv[mid] = cid
        fig = days[convs[cid][0]]
        if who == "customer":
            customers.add(cid)
            if oos:
                if is_question(text, policy_reason):
                    _bump(fig.questions, question_key(text))
            elif intent is not None:
                _bump(fig.intents, intent)
        elif who == "agent":
            agents.add(cid)
        elif who == "bot" and status == "complete" and latency is not None:
            fig.latencies.append(float(latency))
    for cid, (day, reason, mode, held_by) in convs.items():
        if cid not in customers:
            continue
        fig = days[day]
        fig.engaged += 1
        if reason is not None or mode != "bot" or held_by is not None or cid in agents:
            fig.handed_off += 1
            _bump(fig.reasons, reason or "agent_takeover")

    if dense:
        ratings = conn.execute(sa.select(Message.conversation_id, Feedback.rating).select_from(Message)
                               .join(Feedback, Feedback.message_id == Message.id)
                               .join(Conversation, Conversation.id == Message.conversation_id).where(in_range))
    else:  # the ids just read, through the feedback.message_id index (not a second pass over messages)
        ids = list(message_conv)
        ratings = ((message_conv[mid], rating) for i in range(0, len(ids), 900) for mid, rating in conn.execute(
            sa.select(Feedback.message_id, Feedback.rating).where(Feedback.message_id.in_(ids[i:i + 900]))))
    for cid, rating in ratings:
        fig = days[convs[cid][0]]
        if rating > 0:
            fig.thumbs_up += 1
        elif rating < 0:
            fig.thumbs_down += 1
    return days


# -- the roll-up ------------------------------------------------------------------------------------
def settled_before(now: datetime | None = None) -> date:
    """Days before this one are rolled up; this one and later are computed live."""
    return ((now or datetime.now(UTC)) - SETTLE).date()


def _runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Contiguous runs of days, as (first, last)."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and d == out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def refresh(engine: Engine, first: date, last: date, *, now: datetime | None = None) -> dict[str, Any]:
    """Bring the stored days of ``[first, last]`` (settled days only) and every logged day up to date.

    Reads run in their own transactions; the write (upserts + consumed log rows) is one short
    transaction, so chat writers are never held up for long even on SQLite.
    """
    t0 = clock.perf_counter()
    ensure_triggers(engine)
    settled = settled_before(now)
    last = min(last, settled - timedelta(days=1))
    with engine.connect() as conn:
        logged = conn.execute(sa.select(AnalyticsChange.id, AnalyticsChange.day)).all()
        have = set(conn.scalars(sa.select(AnalyticsDay.day).where(AnalyticsDay.day.between(first, last),
                                                                  AnalyticsDay.computed_at >= DEFINITIONS_SINCE)))
    todo = {d for _, d in logged if d < settled}
    d = first
    while d <= last:
        if d not in have:
            todo.add(d)
        d += timedelta(days=1)
    if not todo:
        return {"days": 0, "seconds": 0.0}
    runs = _runs(todo)
    fresh: dict[date, DayFigures] = {}
    with Session(engine) as session:
        for i in range(0, len(runs), MAX_SPANS):  # keeps the OR of ranges within SQL parser limits
            fresh |= spans_figures(session, runs[i:i + MAX_SPANS])
    consumed = [i for i, d in logged if d in todo]
    with engine.begin() as conn:
        rows = [fresh.get(d, DayFigures()).to_row(d) for d in sorted(todo)]
        insert = _insert(engine)
        stmt = insert(AnalyticsDay)
        update = {c: stmt.excluded[c] for c in rows[0] if c != "day"}
        for i in range(0, len(rows), 200):
            conn.execute(stmt.on_conflict_do_update(index_elements=["day"], set_=update), rows[i:i + 200])
        for i in range(0, len(consumed), 500):
            conn.execute(sa.delete(AnalyticsChange).where(AnalyticsChange.id.in_(consumed[i:i + 500])))
    stats = {"days": len(todo), "logged": len(consumed), "seconds": round(clock.perf_counter() - t0, 3)}
    log.info("analytics roll-up refreshed: %s", stats)
    return stats


def _insert(engine: Engine) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def figures_by_day(session: Session, first: date, last: date, *, now: datetime | None = None
                   ) -> dict[date, DayFigures]:
    """Per-day figures of ``[first, last]``: settled days from the roll-up (refreshed first), the
    rest (today, and yesterday for the first minutes after midnight) computed live."""
    engine = session.get_bind()
    settled = settled_before(now)
    days: dict[date, DayFigures] = {}
    if first < settled:
        stop = min(last, settled - timedelta(days=1))
        refresh(engine, first, stop, now=now)
        with engine.connect() as conn:
            for row in conn.execute(sa.select(AnalyticsDay).where(AnalyticsDay.day.between(first, stop))):
                days[row.day] = DayFigures.from_row(row)
    if last >= settled:
        days |= day_figures(session, max(first, settled), last)
    return days
