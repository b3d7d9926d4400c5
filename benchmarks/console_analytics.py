"""Analytics page and CSV export time on 100k conversations (server-side rendered, full HTTP).

Usage::

    .venv/bin/python benchmarks/console_analytics.py [--db-dir /tmp/hybridesk-bench] [--conversations 100000]
        [--repeat 5]

Reuses the SQLite dataset that ``benchmarks/console_transcripts.py`` generated in ``--db-dir``
(or generates one). Prints a table and writes ``benchmarks/results/console_analytics.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "console"))

RANGES = [("30 days", "2026-03-01", "2026-03-30"), ("180 days (all)", "2026-01-01", "2026-06-29")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db-dir", type=Path, default=Path("/tmp/hybridesk-bench"))
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from conftest import PASSWORD, login, make_services
    from console_transcripts import generate
    from fastapi.testclient import TestClient

    from bot.cli_users import add_user
    from bot.db.repositories import UserRepository
    from bot.web.app import create_app

    args.db_dir.mkdir(parents=True, exist_ok=True)
    db_file = args.db_dir / "bench.db"
    fresh = not db_file.exists()
    services = make_services(f"sqlite:///{db_file}", args.db_dir)
    if fresh:
        generate(services.db.engine, args.conversations)
    with services.db.unit_of_work() as session:
        if UserRepository(session).by_email("agent@larkspur.example") is None:
            add_user(session, "agent@larkspur.example", "agent", PASSWORD, "Agent")
        n = session.execute(__import__("sqlalchemy").text("SELECT count(*) FROM conversations")).scalar()
    client = TestClient(create_app(services.settings, services, recover=False))
    login(client, "agent")
    results = []
    for label, start, end in RANGES:
        for path in ("/console/analytics", "/console/analytics.csv"):
            times = []
            for i in range(args.repeat + 1):
                t = time.perf_counter()
                r = client.get(path, params={"from": start, "to": end})
                assert r.status_code == 200, r.text[:300]
                if i:
                    times.append((time.perf_counter() - t) * 1000)
            row = {
                "range": label,
                "path": path,
                "p50_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
            }
            results.append(row)
            print(
                f"{label:<16} {path:<24} p50 {row['p50_ms']:>8.1f} ms  max {row['max_ms']:>8.1f} ms",
                flush=True,
            )
    out = REPO / "benchmarks" / "results" / "console_analytics.json"
    out.write_text(
        json.dumps(
            {
                "conversations": n,
                "results": results,
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            indent=2,
        )
        + "\n"
    )
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
