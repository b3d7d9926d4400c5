"""Support analytics over a date range: volume, deflection, handoffs, ratings, intents, gaps, latency.

Definitions (also shown on the page):

* *deflection rate*: conversations with a customer message that no person ever handled
  (no handoff request, never held by an agent, no agent message), over all such conversations;
* *handoff rate*: conversations with a handoff reason or a non-bot mode, over the same base;
* *top out-of-scope questions*: customer messages the NLU put out of scope, grouped by their
  normalised text: what the knowledge base is missing;
* *median latency*: of complete bot replies, from customer message stored to reply stored.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.db.models import Conversation, Feedback, Message

TOP_N = 10


@dataclass
class Analytics:
    date_from: date
    date_to: date
    per_day: list[tuple[str, int]] = field(default_factory=list)
    conversations: int = 0
    engaged: int = 0  # with at least one customer message
    deflected: int = 0
    handed_off: int = 0
    handoff_reasons: list[tuple[str, int]] = field(default_factory=list)
    thumbs_up: int = 0
    thumbs_down: int = 0
    satisfaction_avg: float | None = None
    satisfaction_counts: list[tuple[int, int]] = field(default_factory=list)
    top_intents: list[tuple[str, int]] = field(default_factory=list)
    top_out_of_scope: list[tuple[str, int]] = field(default_factory=list)
    median_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    replies: int = 0

    @property
    def deflection_rate(self) -> float | None:
        return self.deflected / self.engaged if self.engaged else None

    @property
    def handoff_rate(self) -> float | None:
        return self.handed_off / self.engaged if self.engaged else None

    @property
    def max_per_day(self) -> int:
        return max([n for _, n in self.per_day] or [0])


def default_range(today: date | None = None) -> tuple[date, date]:
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=29), today


def _bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    return (datetime.combine(date_from, time.min, tzinfo=UTC),
            datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC))


def _day(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return sa.func.substr(column, 1, 10)  # stored as 'YYYY-MM-DD HH:MM:SS...' in UTC
    return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")


def compute(session: Session, date_from: date, date_to: date) -> Analytics:
    """All figures for conversations created in ``[date_from, date_to]`` (UTC days)."""
    start, end = _bounds(date_from, date_to)
    a = Analytics(date_from, date_to)
    in_range = sa.and_(Conversation.created_at >= start, Conversation.created_at < end)
    day = _day(session, Conversation.created_at)
    counts = dict(session.execute(sa.select(day, sa.func.count()).where(in_range).group_by(day)).all())
    d = date_from
    while d <= date_to:
        a.per_day.append((d.isoformat(), int(counts.get(d.isoformat(), 0))))
        d += timedelta(days=1)
    a.conversations = sum(n for _, n in a.per_day)

    conv_ids = sa.select(Conversation.id).where(in_range)
    with_customer = sa.select(Message.conversation_id).where(
        Message.conversation_id.in_(conv_ids), Message.role == "customer")
    with_agent = sa.select(Message.conversation_id).where(
        Message.conversation_id.in_(conv_ids), Message.role == "agent")
    handed = sa.or_(Conversation.handoff_reason.is_not(None), Conversation.mode != "bot",
                    Conversation.held_by_user_id.is_not(None), Conversation.id.in_(with_agent))
    engaged = sa.and_(in_range, Conversation.id.in_(with_customer))
    a.engaged = int(session.scalar(sa.select(sa.func.count()).select_from(Conversation).where(engaged)) or 0)
    a.handed_off = int(session.scalar(
        sa.select(sa.func.count()).select_from(Conversation).where(engaged, handed)) or 0)
    a.deflected = a.engaged - a.handed_off
    reason = sa.func.coalesce(Conversation.handoff_reason, "agent_takeover")
    a.handoff_reasons = [(r, int(n)) for r, n in session.execute(
        sa.select(reason, sa.func.count()).where(engaged, handed).group_by(reason)
        .order_by(sa.func.count().desc()).limit(TOP_N))]

    fb = dict(session.execute(
        sa.select(Feedback.rating, sa.func.count()).join(Conversation, Conversation.id == Feedback.conversation_id)
        .where(in_range).group_by(Feedback.rating)).all())
    a.thumbs_up = int(sum(n for r, n in fb.items() if r > 0))
    a.thumbs_down = int(sum(n for r, n in fb.items() if r < 0))
    sat = session.execute(sa.select(Conversation.satisfaction, sa.func.count())
                          .where(in_range, Conversation.satisfaction.is_not(None))
                          .group_by(Conversation.satisfaction).order_by(Conversation.satisfaction)).all()
    a.satisfaction_counts = [(int(s), int(n)) for s, n in sat]
    total = sum(n for _, n in a.satisfaction_counts)
    a.satisfaction_avg = sum(s * n for s, n in a.satisfaction_counts) / total if total else None

    customer_in_range = sa.and_(Message.role == "customer", Message.created_at >= start, Message.created_at < end)
    a.top_intents = [(i, int(n)) for i, n in session.execute(
        sa.select(Message.intent, sa.func.count()).where(customer_in_range, Message.intent.is_not(None),
                                                          Message.intent != "out_of_scope")
        .group_by(Message.intent).order_by(sa.func.count().desc(), Message.intent).limit(TOP_N))]
    question = sa.func.lower(sa.func.trim(Message.text))
    a.top_out_of_scope = [(q, int(n)) for q, n in session.execute(
        sa.select(question, sa.func.count()).where(
            customer_in_range, sa.or_(Message.intent == "out_of_scope", Message.out_of_scope.is_(True)))
        .group_by(question).order_by(sa.func.count().desc(), question).limit(TOP_N))]

    replies = sa.and_(Message.role == "bot", Message.status == "complete", Message.latency_ms.is_not(None),
                      Message.created_at >= start, Message.created_at < end)
    a.replies = int(session.scalar(sa.select(sa.func.count()).select_from(Message).where(replies)) or 0)
    if a.replies:
        def quantile(q: float) -> float | None:
            offset = min(a.replies - 1, int(q * (a.replies - 1)))
            value = session.scalar(sa.select(Message.latency_ms).where(replies)
                                   .order_by(Message.latency_ms).offset(offset).limit(1))
            return None if value is None else float(value)
        a.median_latency_ms = quantile(0.5)
        a.p95_latency_ms = quantile(0.95)
    return a


def to_csv(a: Analytics) -> str:
    """The figures as ``section,key,value`` rows (what a spreadsheet wants)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "value"])
    w.writerow(["range", "from", a.date_from.isoformat()])
    w.writerow(["range", "to", a.date_to.isoformat()])
    summary = {
        "conversations": a.conversations, "engaged_conversations": a.engaged, "deflected": a.deflected,
        "deflection_rate": _fmt(a.deflection_rate), "handed_off": a.handed_off,
        "handoff_rate": _fmt(a.handoff_rate), "thumbs_up": a.thumbs_up, "thumbs_down": a.thumbs_down,
        "satisfaction_avg": _fmt(a.satisfaction_avg), "bot_replies": a.replies,
        "median_latency_ms": _fmt(a.median_latency_ms), "p95_latency_ms": _fmt(a.p95_latency_ms),
    }
    for k, v in summary.items():
        w.writerow(["summary", k, v])
    for section, rows in (("conversations_per_day", a.per_day), ("handoff_reason", a.handoff_reasons),
                          ("satisfaction", a.satisfaction_counts), ("top_intent", a.top_intents),
                          ("top_out_of_scope", a.top_out_of_scope)):
        for k, v in rows:
            w.writerow([section, _csv_safe(str(k)), v])
    return buf.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _csv_safe(value: str) -> str:
    """Customer text in a spreadsheet: neutralise formula injection (=, +, -, @ at the start)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
