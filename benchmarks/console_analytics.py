"""Analytics page and CSV export time on 100k conversations (server-side rendered, full HTTP).

Usage::

    .venv/bin/python benchmarks/console_analytics.py [--db-dir /tmp/hybridesk-bench] [--conversations 100000]
        [--repeat 5] [--skip-direct]

Reuses the SQLite dataset that ``benchmarks/console_transcripts.py`` generated in ``--db-dir``
(or generates one). Measures, in order:

1. the cost of a write with and without the roll-up's change-log triggers (one message per
   transaction, into a conversation of today and into one of an older day);
2. the direct computation (``analytics.compute_direct``, no roll-up) per range, once;
3. building the daily roll-up of all days (once);
4. ``GET /console/analytics`` and ``/console/analytics.csv`` per range (roll-up + live today);
5. the page after new messages reach conversations of older days (incremental refresh).

Prints a table and writes ``benchmarks/results/console_analytics.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "console"))

RANGES = [("30 days", "2026-03-01", "2026-03-30"), ("180 days (all)", "2026-01-01", "2026-06-29")]


def _write_cost(services, n: int = 300) -> dict[str, float]:
    """ms per committed single-message insert into a conversation of today and of an older day."""
    import sqlalchemy as sa

    from bot.db.models import Conversation, Message

    with services.db.unit_of_work() as session:
        old = session.scalars(sa.select(Conversation.id).order_by(Conversation.created_at).limit(1)).one()
        today = Conversation(id="bench-today-" + "0" * 20, token_hash="0" * 64, state={},
                             created_at=datetime.now(UTC))
        if session.get(Conversation, today.id) is None:
            session.add(today)
    out = {}
    for label, cid in (("today", today.id), ("older day", old)):
        with services.db.unit_of_work() as session:
            seq = int(session.scalar(sa.select(sa.func.max(Message.seq)).where(Message.conversation_id == cid)) or 0)
        t = time.perf_counter()
        for i in range(n):
            with services.db.unit_of_work() as session:
                session.add(Message(conversation_id=cid, seq=seq + i + 1, role="agent", text="benchmark write",
                                    status="complete"))
        out[label] = round((time.perf_counter() - t) * 1000 / n, 3)
    return out


def _touch(services, rng: random.Random, k: int) -> set[date]:
    """A customer message and a bot reply in ``k`` random conversations of older days."""
    import sqlalchemy as sa

    from bot.db.models import Conversation, Message

    with services.db.unit_of_work() as session:
        ids = session.scalars(sa.select(Conversation.id).where(Conversation.created_at < datetime(2026, 6, 29, tzinfo=UTC))
                              .order_by(sa.func.random()).limit(k)).all()
        days = set()
        for cid in ids:
            conv = session.get(Conversation, cid)
            days.add(conv.created_at.date())
            seq = int(session.scalar(sa.select(sa.func.max(Message.seq)).where(Message.conversation_id == cid)))
            session.add_all([
                Message(conversation_id=cid, seq=seq + 1, role="customer", text="One more question?",
                        intent="track_order", status="complete"),
                Message(conversation_id=cid, seq=seq + 2, role="bot", text="Sure.", status="complete",
                        latency_ms=rng.uniform(300, 4000)),
            ])
    return days


def _timed(client, path: str, params: dict[str, str]) -> float:
    t = time.perf_counter()
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text[:300]
    return (time.perf_counter() - t) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db-dir", type=Path, default=Path("/tmp/hybridesk-bench"))
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-direct", action="store_true", help="do not time the direct computation")
    args = ap.parse_args()

    import sqlalchemy as sa
    from conftest import PASSWORD, login, make_services
    from console_transcripts import generate
    from fastapi.testclient import TestClient

    from bot.cli_users import add_user
    from bot.console import analytics, analytics_rollup
    from bot.db.models import AnalyticsDay
    from bot.db.repositories import UserRepository
    from bot.web.app import create_app

    args.db_dir.mkdir(parents=True, exist_ok=True)
    db_file = args.db_dir / "bench.db"
    fresh = not db_file.exists()
    services = make_services(f"sqlite:///{db_file}", args.db_dir)
    engine = services.db.engine
    if fresh:
        t = time.perf_counter()
        generate(engine, args.conversations)
        print(f"generated {args.conversations} conversations in {time.perf_counter() - t:.1f} s", flush=True)
    with services.db.unit_of_work() as session:
        if UserRepository(session).by_email("agent@larkspur.example") is None:
            add_user(session, "agent@larkspur.example", "agent", PASSWORD, "Agent")
        n = session.execute(sa.text("SELECT count(*) FROM conversations")).scalar()
        session.execute(sa.delete(AnalyticsDay))  # start from an empty roll-up on every run
    report: dict = {"conversations": n}

    with engine.connect() as conn:
        has_triggers = conn.execute(sa.text(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'analytics_%'")).scalar()
    if not has_triggers:
        report["write_ms_without_triggers"] = _write_cost(services)
    analytics_rollup.ensure_triggers(engine)
    report["write_ms_with_triggers"] = _write_cost(services)
    print("write cost (ms per committed message):", report.get("write_ms_without_triggers"), "->",
          report["write_ms_with_triggers"], flush=True)

    if not args.skip_direct:
        report["direct_ms"] = {}
        for label, start, end in RANGES:
            t = time.perf_counter()
            with services.db.unit_of_work() as session:
                analytics.compute_direct(session, date.fromisoformat(start), date.fromisoformat(end))
            report["direct_ms"][label] = round((time.perf_counter() - t) * 1000, 1)
            print(f"direct computation {label:<16} {report['direct_ms'][label]:>9.1f} ms", flush=True)

    t = time.perf_counter()
    stats = analytics_rollup.refresh(engine, date(2026, 1, 1), date(2026, 6, 29))
    report["rollup_build_s"] = round(time.perf_counter() - t, 2)
    report["rollup_days"] = stats["days"]
    print(f"roll-up of {stats['days']} days built in {report['rollup_build_s']} s", flush=True)

    client = TestClient(create_app(services.settings, services, recover=False))
    login(client, "agent")
    results = []
    for label, start, end in RANGES:
        for path in ("/console/analytics", "/console/analytics.csv"):
            times = [_timed(client, path, {"from": start, "to": end}) for _ in range(args.repeat + 1)][1:]
            row = {"range": label, "path": path, "p50_ms": round(statistics.median(times), 1),
                   "max_ms": round(max(times), 1)}
            results.append(row)
            print(f"{label:<16} {path:<24} p50 {row['p50_ms']:>8.1f} ms  max {row['max_ms']:>8.1f} ms", flush=True)
    report["results"] = results

    # new activity on older days, then the page (the refresh recomputes the touched days only)
    rng = random.Random(5)
    incremental = []
    for k in (1, 20, 20, 20):
        days = _touch(services, rng, k)
        ms = _timed(client, "/console/analytics", {"from": RANGES[1][1], "to": RANGES[1][2]})
        incremental.append({"conversations_touched": k, "days_recomputed": len(days), "page_ms": round(ms, 1)})
        print(f"after new messages in {k:>2} old conversations ({len(days):>2} days): page {ms:8.1f} ms", flush=True)
    report["incremental"] = incremental
    with services.db.unit_of_work() as session:
        start, end = date.fromisoformat(RANGES[1][1]), date.fromisoformat(RANGES[1][2])
        rolled = analytics.compute(session, start, end)
        report["identical_to_direct"] = None if args.skip_direct else (
            rolled == analytics.compute_direct(session, start, end))
    print("roll-up figures identical to the direct computation:", report["identical_to_direct"], flush=True)

    report["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out = REPO / "benchmarks" / "results" / "console_analytics.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
