"""The daily analytics roll-up gives exactly the figures of the direct computation, also after
new messages, ratings and takeovers reach conversations of days already rolled up."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from console_support import build_console, seed_conversation

INTENTS = ["track_order", "get_refund", "cancel_order", "delivery_options", "complaint"]


def _seed(services, rng: random.Random, n: int = 60) -> list[str]:
    from bot.db.models import Conversation, Message

    now = datetime.now(UTC)
    ids = []
    for _ in range(n):
        created = now - timedelta(days=rng.randint(0, 12), minutes=rng.randint(6, 600))
        handoff = rng.random() < 0.15
        cid, _ = seed_conversation(
            services, created_at=created, intent=rng.choice(INTENTS), out_of_scope=rng.random() < 0.15,
            customer=rng.choice(["Do you sell  Boats?", "do you sell boats?", "Where is my order?", "Weather?"]),
            mode="human" if handoff else "bot",  # "handoff_requested" (17) does not fit VARCHAR(16) on PG
            handoff_reason="customer_asked_for_human" if handoff else None,
            thumbs=rng.choice([None, None, 1, -1]), latency_ms=round(rng.uniform(100, 3000), 3))
        with services.db.unit_of_work() as session:
            conv = session.get(Conversation, cid)
            conv.satisfaction = rng.choice([None, 1, 4, 5])
            if rng.random() < 0.1:  # an agent wrote in it: not deflected
                session.add(Message(conversation_id=cid, seq=3, role="agent", text="Hi, Maya here.",
                                    status="complete", created_at=created + timedelta(minutes=1)))
        ids.append(cid)
    with services.db.unit_of_work() as session:  # a conversation without any customer message
        session.add(Conversation(id="empty" + "0" * 27, token_hash="x" * 64, state={}, created_at=now - timedelta(days=2)))
    return ids


def _both(services, first: date, last: date):
    from bot.console import analytics

    with services.db.unit_of_work() as session:
        rolled = analytics.compute(session, first, last)
    with services.db.unit_of_work() as session:
        direct = analytics.compute_direct(session, first, last)
    return rolled, direct


def _stored(services) -> dict[date, datetime]:
    from bot.db.models import AnalyticsDay

    with services.db.unit_of_work() as session:
        return {r.day: r.computed_at for r in session.scalars(sa.select(AnalyticsDay))}


def _pending(services) -> set[date]:
    from bot.db.models import AnalyticsChange

    with services.db.unit_of_work() as session:
        return set(session.scalars(sa.select(AnalyticsChange.day)))


def _later_activity(services, ids: list[str], rng: random.Random) -> set[date]:
    """New messages, ratings, satisfaction, a takeover and a late import on older conversations."""
    from bot.db.models import Conversation, Feedback, Message

    now = datetime.now(UTC)
    touched: set[date] = set()
    with services.db.unit_of_work() as session:
        old = [c for c in session.scalars(sa.select(Conversation).where(Conversation.id.in_(ids)))
               if c.created_at.date() < now.date()]
        a, b, c, d = rng.sample(old, 4)
        session.add_all([
            Message(conversation_id=a.id, seq=10, role="customer", text="Do you sell BOATS?", status="complete",
                    intent="out_of_scope", out_of_scope=True, created_at=now),
            Message(conversation_id=a.id, seq=11, role="bot", text="Sorry.", status="complete", latency_ms=1.5,
                    created_at=now),
        ])
        session.flush()
        bot_b = session.scalars(sa.select(Message).where(Message.conversation_id == b.id,
                                                         Message.role == "bot")).first()
        session.add(Feedback(message_id=bot_b.id, conversation_id=b.id, rating=-1))
        c.satisfaction = 2
        d.mode, d.handoff_reason = "human", "agent_takeover"
        touched |= {x.created_at.date() for x in (a, b, c, d)}
    late = now - timedelta(days=4)  # imported later into a day already rolled up
    seed_conversation(services, created_at=late, intent="complaint", latency_ms=99999.0)
    touched.add(late.date())
    return touched


def _check(services) -> None:
    rng = random.Random(11)
    ids = _seed(services, rng)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=13)
    rolled, direct = _both(services, first, today)
    assert rolled == direct
    assert direct.conversations == 61 and direct.handed_off and direct.top_out_of_scope and direct.thumbs_down
    assert ("do you sell boats?", direct.top_out_of_scope[0][1]) == direct.top_out_of_scope[0]  # normalised
    stored = _stored(services)
    settled = (datetime.now(UTC) - timedelta(minutes=15)).date()
    assert set(stored) == {first + timedelta(days=i) for i in range((settled - first).days)}  # today stays live
    assert _pending(services) == set()

    touched = _later_activity(services, ids, rng)
    assert _pending(services) == touched  # logged by the triggers, day by day
    rolled, direct = _both(services, first, today)
    assert rolled == direct
    from bot.console.analytics_rollup import settled_before

    # within SETTLE (15 min) after midnight yesterday is not settled yet: its change waits
    unsettled = {d for d in touched if d >= settled_before()}
    assert _pending(services) <= unsettled  # (empty again once the settle window has passed)
    again = _stored(services)
    # only the touched days were recomputed
    assert {d for d in stored if again[d] != stored[d]} == touched - unsettled

    # narrower and older ranges (days before the range stay as they are)
    for lo, hi in ((today - timedelta(days=3), today), (first, first + timedelta(days=5)),
                   (today - timedelta(days=40), today - timedelta(days=20))):
        rolled, direct = _both(services, lo, hi)
        assert rolled == direct, (lo, hi)
    # a write to today's conversations is not logged: today is computed live anyway
    seed_conversation(services, created_at=datetime.now(UTC) - timedelta(minutes=1))
    if datetime.now(UTC).date() == today:
        assert today not in _pending(services) and _pending(services) <= unsettled
    rolled, direct = _both(services, first, today)
    assert rolled == direct


def test_rollup_equals_direct_computation_on_sqlite(console):
    _check(console.services)


@pytest.mark.postgres
def test_rollup_equals_direct_computation_on_postgres(pg_url, tmp_path: Path):
    c = build_console(pg_url, tmp_path)
    try:
        _check(c.services)
    finally:
        c.services.close()


def test_the_day_after_midnight_stays_live_until_it_settles(console):
    from bot.console import analytics
    from bot.console.analytics_rollup import settled_before

    now = datetime.now(UTC)
    midnight = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    assert settled_before(midnight + timedelta(minutes=5)) == now.date() - timedelta(days=1)
    assert settled_before(midnight + timedelta(minutes=20)) == now.date()
    seed_conversation(console.services, created_at=now - timedelta(days=1))
    with console.services.db.unit_of_work() as session:
        a = analytics.compute(session, now.date() - timedelta(days=1), now.date(), now=midnight + timedelta(minutes=5))
    assert a.conversations == 1 and _stored(console.services) == {}  # yesterday computed live, not stored


def test_out_of_scope_questions_are_shown_without_personal_data(console):
    """Editors read the top out-of-scope questions too: a customer's e-mail address, phone number,
    order number and name are replaced by placeholders, in the live figures and in the stored roll-up."""
    from bot.console import analytics

    now = datetime.now(UTC)
    for days in (0, 3):  # today is computed live, three days ago comes from the roll-up
        seed_conversation(console.services, created_at=now - timedelta(days=days, minutes=10), out_of_scope=True,
                          customer="My name is Anna Berg, text me on +31 6 1234 5678 or anna.berg@example.com "
                                   "about order 884213 and do you sell BOATS?")
    with console.services.db.unit_of_work() as session:
        rolled = analytics.compute(session, now.date() - timedelta(days=5), now.date())
    with console.services.db.unit_of_work() as session:
        direct = analytics.compute_direct(session, now.date() - timedelta(days=5), now.date())
    assert rolled == direct and _stored(console.services)
    assert direct.top_out_of_scope == [
        ("my name is {{Customer Name}}, text me on {{Customer Phone}} or {{Customer Email}} about order "
         "{{Order Number}} and do you sell boats?", 2)]
    assert "anna" not in analytics.to_csv(direct).lower()
