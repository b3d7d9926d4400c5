"""Support analytics over a date range: volume, deflection, handoffs, ratings, intents, gaps, latency.

Definitions (also shown on the page):

* *deflection rate*: conversations with a customer message that no person ever handled
  (no handoff request, never held by an agent, no agent message), over all such conversations;
* *handoff rate*: conversations with a handoff reason or a non-bot mode, over the same base;
* *top out-of-scope questions*: customer messages the NLU put out of scope, grouped by their
  normalised text with personal data (e-mail addresses, phone, card and order numbers, names)
  replaced by placeholders, as the ticket importer does: what the knowledge base is missing, shown
  to editors too, who have no business reading a customer's details. Messages that ask nothing are
  left out (:func:`is_question`): the ones the policy answered as thanks or as having no words
  ("thanks", "!!!", "👍"), and a bare acknowledgement or greeting ("ok", "hi there");
* *median latency*: of complete bot replies, from customer message stored to reply stored.

:func:`compute` reads settled days from the daily roll-up (:mod:`bot.console.analytics_rollup`)
and computes today live; :func:`compute_direct` is the same figures straight from the raw
tables, in one pass (the reference the roll-up is tested against).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.db.models import Conversation, Feedback, Message

TOP_N = 10
#: the policy's reasons (``Message.policy_reason``, ``bot.conversation.policy.decide``) for a customer message
#: that asks nothing: thanks ("ok thanks") and a message without words ("!!!", "👍", "🙂🙂")
NOT_A_QUESTION_REASONS = frozenset({"thanks", "no_words"})
#: an out-of-scope message the bot answered from a retrieved policy all the same: nothing the KB is missing
ANSWERED_FROM_KB_REASONS = frozenset({"in_knowledge_base"})
#: words that, on their own, acknowledge, thank or greet and ask nothing ("ok", "thank you", "hi there"): the
#: policy answers "ok" as out of scope, and an angry "thanks" is no thanks to it
_ACKNOWLEDGEMENTS = frozenset({"ok", "okay", "okey", "k", "kk", "yes", "yeah", "yep", "yup", "no", "nope", "nah",
                               "sure", "fine", "alright", "cool", "great", "good", "thanks", "thank", "you", "thx",
                               "ty", "cheers", "hi", "hello", "hey", "there", "bye", "goodbye"})


_WORDS = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def is_question(text: str | None, policy_reason: str | None) -> bool:
    """Whether an out-of-scope customer message belongs among the top out-of-scope questions (what the
    KB is missing): not thanks, not a message without words, not a bare "ok" or "hi", and not one the bot
    answered from the KB though the intent model called it out of scope ("What is your returns window?")."""
    if policy_reason in NOT_A_QUESTION_REASONS or policy_reason in ANSWERED_FROM_KB_REASONS:
        return False
    words = _WORDS.findall((text or "").lower())
    return bool(words) and not (len(words) <= 3 and set(words) <= _ACKNOWLEDGEMENTS)


def question_key(text: str | None) -> str:
    """How an out-of-scope question is grouped and shown: lower case, single spaces, no personal data."""
    import re

    from models.pii import scrub_pii

    scrubbed = " ".join(scrub_pii(text or "")[0].split())
    # the placeholders keep their capitals; names were found by theirs, so scrub before lowering
    return "".join(part if part.startswith("{{") else part.lower() for part in re.split(r"(\{\{[^}]*\}\})", scrubbed))


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


def p95_index(n: int) -> int:
    """Index of the 95th percentile in ``n`` sorted values (nearest rank: at least 95% of the values
    are at or below it, so with fewer than 20 replies it is the slowest one)."""
    return max(0, -(-95 * n // 100) - 1)


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


def _plain(session: Session, column: Any) -> Any:
    """``column || ''`` on SQLite so the planner walks the date range's conversations and their
    messages (conversation index) instead of scanning a whole low-selectivity message index."""
    return column.op("||")("") if session.get_bind().dialect.name == "sqlite" else column


def compute(session: Session, date_from: date, date_to: date, *, now: datetime | None = None) -> Analytics:
    """All figures for conversations created in ``[date_from, date_to]`` (UTC days), via the roll-up."""
    from bot.console.analytics_rollup import figures_by_day

    return combine(date_from, date_to, figures_by_day(session, date_from, date_to, now=now))


def combine(date_from: date, date_to: date, days: dict[date, Any]) -> Analytics:
    """Sum per-day figures (``analytics_rollup.DayFigures``) into the range's :class:`Analytics`."""
    import numpy as np

    a = Analytics(date_from, date_to)
    reasons: dict[str, int] = {}
    intents: dict[str, int] = {}
    questions: dict[str, int] = {}
    satisfaction: dict[int, int] = {}
    latencies = []
    d = date_from
    while d <= date_to:
        fig = days.get(d)
        a.per_day.append((d.isoformat(), fig.conversations if fig else 0))
        d += timedelta(days=1)
        if fig is None:
            continue
        a.engaged += fig.engaged
        a.handed_off += fig.handed_off
        a.thumbs_up += fig.thumbs_up
        a.thumbs_down += fig.thumbs_down
        for merged, part in ((reasons, fig.reasons), (intents, fig.intents), (questions, fig.questions),
                             (satisfaction, fig.satisfaction)):
            for k, n in part.items():
                merged[k] = merged.get(k, 0) + n
        if len(fig.latencies):
            latencies.append(np.asarray(fig.latencies, dtype=np.float64))
    a.conversations = sum(n for _, n in a.per_day)
    a.deflected = a.engaged - a.handed_off
    a.handoff_reasons, a.top_intents, a.top_out_of_scope = _top(reasons), _top(intents), _top(questions)
    a.satisfaction_counts = sorted(satisfaction.items())
    rated = sum(n for _, n in a.satisfaction_counts)
    a.satisfaction_avg = sum(v * n for v, n in a.satisfaction_counts) / rated if rated else None
    values = np.sort(np.concatenate(latencies)) if latencies else np.zeros(0)
    a.replies = len(values)
    if a.replies:
        a.median_latency_ms = float(values[int(0.5 * (a.replies - 1))])
        a.p95_latency_ms = float(values[p95_index(a.replies)])
    return a


def compute_direct(session: Session, date_from: date, date_to: date) -> Analytics:
    """All figures for conversations created in ``[date_from, date_to]`` (UTC days), from the raw tables.

    Every query starts from the conversations of the range (``created_at`` is indexed) and reaches
    their messages through the ``(conversation_id, seq)`` index, so the cost follows the range,
    not the size of the whole history.
    """
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

    # One pass over the range's messages, aggregated here. A narrow range reaches them through
    # "conversation_id IN (conversations of the range)" (index probes per conversation); a wide
    # one joins while scanning messages once (cheaper than probing most of the table).
    total = int(session.scalar(sa.select(sa.func.count()).select_from(Conversation)) or 0)
    dense = total > 0 and a.conversations > 0.25 * total
    role = _plain(session, Message.role)
    is_oos = sa.or_(_plain(session, Message.intent) == "out_of_scope", Message.out_of_scope.is_(True))
    asked = sa.and_(role == "customer", is_oos)
    cols = (Message.conversation_id, Message.role, Message.intent, is_oos, Message.latency_ms, Message.status,
            sa.case((asked, Message.text), else_=None), sa.case((asked, Message.policy_reason), else_=None))
    if dense:
        rows = sa.select(*cols).join(Conversation, Conversation.id == Message.conversation_id).where(in_range)
        feedback = (sa.select(Feedback.rating, sa.func.count())
                    .join(Conversation, Conversation.id == Feedback.conversation_id).where(in_range))
    else:
        of_range = Message.conversation_id.in_(sa.select(Conversation.id).where(in_range))
        rows = sa.select(*cols).where(of_range)
        feedback = (sa.select(Feedback.rating, sa.func.count()).select_from(Message)
                    .join(Feedback, Feedback.message_id == Message.id).where(of_range))
    customers: set[str] = set()
    agents: set[str] = set()
    intents: dict[str, int] = {}
    questions: dict[str, int] = {}
    latencies: list[float] = []
    for cid, who, intent, oos, latency, status, text, policy_reason in session.execute(rows):
        if who == "customer":
            customers.add(cid)
            if oos:
                if is_question(text, policy_reason):
                    q = question_key(text)
                    questions[q] = questions.get(q, 0) + 1
            elif intent is not None:
                intents[intent] = intents.get(intent, 0) + 1
        elif who == "agent":
            agents.add(cid)
        elif who == "bot" and status == "complete" and latency is not None:
            latencies.append(float(latency))

    reasons: dict[str, int] = {}
    for cid, reason, mode, held_by in session.execute(
            sa.select(Conversation.id, Conversation.handoff_reason, Conversation.mode,
                      Conversation.held_by_user_id).where(in_range)):
        if cid not in customers:
            continue
        a.engaged += 1
        if reason is not None or mode != "bot" or held_by is not None or cid in agents:
            a.handed_off += 1
            key = reason or "agent_takeover"
            reasons[key] = reasons.get(key, 0) + 1
    a.deflected = a.engaged - a.handed_off
    a.handoff_reasons = _top(reasons)
    a.top_intents = _top(intents)
    a.top_out_of_scope = _top(questions)

    fb = dict(session.execute(feedback.group_by(Feedback.rating)).all())
    a.thumbs_up = int(sum(n for r, n in fb.items() if r > 0))
    a.thumbs_down = int(sum(n for r, n in fb.items() if r < 0))
    sat = session.execute(sa.select(Conversation.satisfaction, sa.func.count())
                          .where(in_range, Conversation.satisfaction.is_not(None))
                          .group_by(Conversation.satisfaction).order_by(Conversation.satisfaction)).all()
    a.satisfaction_counts = [(int(v), int(n)) for v, n in sat]
    rated = sum(n for _, n in a.satisfaction_counts)
    a.satisfaction_avg = sum(v * n for v, n in a.satisfaction_counts) / rated if rated else None

    latencies.sort()
    a.replies = len(latencies)
    if latencies:
        a.median_latency_ms = latencies[int(0.5 * (len(latencies) - 1))]
        a.p95_latency_ms = latencies[p95_index(len(latencies))]
    return a


def _top(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]


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
