"""Server-side overhead per chat message, excluding generation (target p95 <= 20 ms).

Runs the real app (real uvicorn, SQLite, conversation manager, rasa-sdk action executor, guardrails,
live channel, SSE) in a server process of its own, with an instant scripted generator and instant
fake NLU/retrieval, so what is measured is everything hybridesk does around the models:

* ``ack``: ``POST /api/conversations/{id}/messages`` round trip (authorise, validate, store + commit, 202);
* ``turn``: from sending the POST to receiving the finished reply as an SSE ``message`` event;
* ``manager only``: the same turn in process without HTTP/SSE (the conversation manager's share);
* ``server CPU per message``: CPU seconds the server process spent, divided by the messages. On a
  shared, overloaded machine wall-clock percentiles mostly measure the neighbours; CPU time does not.

Usage: .venv/bin/python benchmarks/widget_server_overhead.py [--messages 200] [--conversations 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "web"), str(REPO / "benchmarks")]

from _common import scratch_dir, summary, table, write_json  # noqa: E402
from web_fakes import SSEReader, build_app, build_services  # noqa: E402

TARGET_P95_MS = 20.0
QUESTIONS = [
    "How long do I have to return a lamp?",
    "How long does standard delivery take?",
    "Can I get a refund for a rug?",
]


def serve() -> None:
    """Child process: the app with fakes on a free port (printed), plus a CPU-time probe."""
    import socket

    import uvicorn

    services = build_services(scratch_dir("hybridesk-bench-"), delay=0.0)
    app = build_app(services)
    app.add_api_route("/__bench/cpu", lambda: {"cpu": time.process_time()}, include_in_schema=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)).run(sockets=[sock])


def _manager_turns(n: int, warmup: int) -> tuple[list[float], float]:
    """The same turn in process (authorise + receive + respond), to separate the web layer's share."""
    import asyncio

    from bot.services import set_runtime_services

    services = build_services(scratch_dir("hybridesk-bench-"), delay=0.0)
    manager = build_app(services).state.manager
    set_runtime_services(services)  # the rasa-sdk actions read it
    conv, token = manager.start()
    times: list[float] = []
    cpu = [0.0]

    async def run() -> None:
        for i in range(warmup + n):
            if i == warmup:
                cpu[0] = time.process_time()
            t0 = time.perf_counter()
            await asyncio.to_thread(manager.authorize, conv.id, token)
            message = await asyncio.to_thread(manager.receive, conv.id, QUESTIONS[i % len(QUESTIONS)])
            await manager.respond(conv.id, message.id)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)

    asyncio.run(run())
    cpu_ms = (time.process_time() - cpu[0]) * 1000 / n
    set_runtime_services(None)
    services.close()
    return times, cpu_ms


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--conversations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return {}

    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    acks: list[float] = []
    turns: list[float] = []
    try:
        url = f"http://127.0.0.1:{int(child.stdout.readline())}"
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(200):
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            convs = []
            for _ in range(args.conversations):
                body = client.post("/api/conversations").json()
                headers = {"Authorization": f"Bearer {body['token']}"}
                reader = SSEReader(f"{url}/api/conversations/{body['conversation_id']}/events", headers)
                reader.start()
                reader.ready.wait(10)
                convs.append((body["conversation_id"], headers, reader))
            cpu_start = 0.0
            for i in range(args.warmup + args.messages):
                if i == args.warmup:
                    cpu_start = client.get("/__bench/cpu").json()["cpu"]
                cid, headers, reader = convs[i % len(convs)]
                t0 = time.perf_counter()
                r = client.post(
                    f"/api/conversations/{cid}/messages",
                    headers=headers,
                    json={"text": QUESTIONS[i % len(QUESTIONS)]},
                )
                t_ack = time.perf_counter()
                message_id = r.json()["message_id"]
                reader.next("message", timeout=30, where=lambda d, m=message_id: d.get("reply_to") == m)
                t_done = time.perf_counter()
                if i >= args.warmup:
                    acks.append((t_ack - t0) * 1000)
                    turns.append((t_done - t0) * 1000)
            cpu_ms = (client.get("/__bench/cpu").json()["cpu"] - cpu_start) * 1000 / args.messages
            for _, _, reader in convs:
                reader.stop()
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    manager_only, manager_cpu_ms = _manager_turns(args.messages, args.warmup)

    rows = [
        {"measure": "ack (POST -> 202)", **summary(acks)},
        {"measure": "turn (POST -> reply event)", **summary(turns)},
        {"measure": "manager only (no HTTP/SSE)", **summary(manager_only)},
    ]
    print(table(rows))
    load = os.getloadavg()[0]
    p95 = rows[1]["p95"]
    web_cpu = cpu_ms - manager_cpu_ms
    print(f"\nserver CPU per message (whole turn, no generation): {cpu_ms:.1f} ms")
    print(f"  of which the conversation manager (in process, same turn): {manager_cpu_ms:.1f} ms")
    print(f"  so the web layer (HTTP, auth, live channel, SSE): {web_cpu:.1f} ms")
    print(f"1-min load average during the run: {load:.1f} on {os.cpu_count()} cores")
    print(
        f"server overhead per message excluding generation: p95 {p95:.1f} ms "
        f"(target <= {TARGET_P95_MS:.0f} ms: {'met' if p95 <= TARGET_P95_MS else 'NOT met'})"
    )
    result = {
        "rows": rows,
        "target_p95_ms": TARGET_P95_MS,
        "met": p95 <= TARGET_P95_MS,
        "messages": args.messages,
        "conversations": args.conversations,
        "server_cpu_ms_per_message": cpu_ms,
        "manager_cpu_ms_per_turn": manager_cpu_ms,
        "web_layer_cpu_ms_per_message": web_cpu,
        "load_average_1min": load,
        "cpu_count": os.cpu_count(),
        "note": "instant scripted generator + fake NLU/retrieval; real uvicorn, SQLite, manager, actions",
    }
    write_json("widget_server_overhead", result)
    return result


if __name__ == "__main__":
    main()
