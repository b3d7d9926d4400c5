"""Server-side overhead per chat message, excluding generation (target p95 <= 20 ms).

Runs the real app (real uvicorn, SQLite, conversation manager, rasa-sdk action executor, guardrails,
live channel, SSE) with an instant scripted generator and instant fake NLU/retrieval, so what is
measured is everything hybridesk does around the models:

* ``ack``: ``POST /api/conversations/{id}/messages`` round trip (authorise, validate, store + commit, 202);
* ``turn``: from sending the POST to receiving the finished reply as an SSE ``message`` event.

Usage: .venv/bin/python benchmarks/widget_server_overhead.py [--messages 200] [--conversations 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "web"), str(REPO / "benchmarks")]

from _common import summary, table, write_json  # noqa: E402
from web_fakes import ServerThread, SSEReader, build_app, build_services  # noqa: E402

TARGET_P95_MS = 20.0
QUESTIONS = ["How long do I have to return a lamp?", "How long does standard delivery take?",
             "Can I get a refund for a rug?"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--conversations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)

    services = build_services(Path(tempfile.mkdtemp(prefix="hybridesk-bench-")), delay=0.0)
    app = build_app(services)
    acks: list[float] = []
    turns: list[float] = []
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        convs = []
        for _ in range(args.conversations):
            body = client.post("/api/conversations").json()
            headers = {"Authorization": f"Bearer {body['token']}"}
            reader = SSEReader(f"{server.url}/api/conversations/{body['conversation_id']}/events", headers)
            reader.start()
            reader.ready.wait(10)
            convs.append((body["conversation_id"], headers, reader))
        for i in range(args.warmup + args.messages):
            cid, headers, reader = convs[i % len(convs)]
            t0 = time.perf_counter()
            r = client.post(f"/api/conversations/{cid}/messages", headers=headers,
                            json={"text": QUESTIONS[i % len(QUESTIONS)]})
            t_ack = time.perf_counter()
            message_id = r.json()["message_id"]
            reader.next("message", timeout=30, where=lambda d, m=message_id: d.get("reply_to") == m)
            t_done = time.perf_counter()
            if i >= args.warmup:
                acks.append((t_ack - t0) * 1000)
                turns.append((t_done - t0) * 1000)
        for _, _, reader in convs:
            reader.stop()
    services.close()

    rows = [{"measure": "ack (POST -> 202)", **summary(acks)},
            {"measure": "turn (POST -> reply event)", **summary(turns)}]
    print(table(rows))
    p95 = rows[1]["p95"]
    print(f"\nserver overhead per message excluding generation: p95 {p95:.1f} ms "
          f"(target <= {TARGET_P95_MS:.0f} ms: {'met' if p95 <= TARGET_P95_MS else 'NOT met'})")
    result = {"rows": rows, "target_p95_ms": TARGET_P95_MS, "met": p95 <= TARGET_P95_MS,
              "messages": args.messages, "conversations": args.conversations,
              "note": "instant scripted generator + fake NLU/retrieval; real uvicorn, SQLite, manager, actions"}
    write_json("widget_server_overhead", result)
    return result


if __name__ == "__main__":
    main()
