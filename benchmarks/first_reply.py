"""Foundation figures: time to first reply after `hybridesk serve`, and reply latency for 20 messages.

Usage: python benchmarks/first_reply.py [--data-dir DIR] [--messages 20]

Initialises a data dir (like `make demo`) if needed, starts the real server as a subprocess on a
free loopback port, waits for /healthz, then sends messages through the Rasa REST channel.
Writes benchmarks/results/first_reply.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_dir, summary, table, write_json  # noqa: E402

QUESTIONS = [
    "How many days do I have to return something?",
    "What payment methods do you take?",
    "How long does standard delivery take?",
    "Can I cancel my order?",
    "Is there a fee if I cancel?",
    "How do I get an invoice for my order?",
    "When will my refund arrive?",
    "What are your support hours?",
    "How do I reset my password?",
    "Can I change my delivery address?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_gib(pid: int) -> tuple[float, float]:
    """(resident, peak resident) memory of ``pid`` in GiB, from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024 / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--messages", type=int, default=20)
    args = ap.parse_args()
    data_dir = args.data_dir or scratch_dir("hybridesk-bench-")
    env = dict(os.environ, HYBRIDESK_DATA_DIR=str(data_dir))
    exe = Path(sys.executable).parent / "hybridesk"
    t0 = time.perf_counter()
    subprocess.run([str(exe), "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    init_s = time.perf_counter() - t0
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=900) as client:
            while True:
                try:
                    if client.get(base + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit("server exited during start-up")
                time.sleep(0.1)
            up_s = time.perf_counter() - t0
            r = client.post(
                base + "/webhooks/rest/webhook", json={"sender": "bench-0", "message": QUESTIONS[0]}
            )
            r.raise_for_status()
            first_reply_s = time.perf_counter() - t0
            latencies = []
            for i in range(args.messages):
                q = QUESTIONS[i % len(QUESTIONS)]
                t = time.perf_counter()
                r = client.post(
                    base + "/webhooks/rest/webhook", json={"sender": f"bench-{i % 5}", "message": q}
                )
                r.raise_for_status()
                latencies.append(time.perf_counter() - t)
            rss = _rss_gib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a reply still generating: do not wait for it
            proc.kill()
            proc.wait()
    lat = summary(latencies)
    rows = [
        {"measure": "hybridesk init (fresh data dir)", "seconds": init_s},
        {"measure": "serve: start -> /healthz answers", "seconds": up_s},
        {"measure": "serve: start -> first reply", "seconds": first_reply_s},
        {"measure": f"reply latency p50 ({args.messages} messages)", "seconds": lat["p50"]},
        {"measure": f"reply latency p95 ({args.messages} messages)", "seconds": lat["p95"]},
        {"measure": "server resident memory, models loaded (GiB): now / peak", "seconds": f"{rss[0]:.2f} / {rss[1]:.2f}"},
    ]
    print(table(rows))
    write_json(
        "first_reply",
        {
            "init_s": init_s,
            "up_s": up_s,
            "first_reply_s": first_reply_s,
            "latency_s": lat,
            "rss_gib": rss[0],
            "peak_rss_gib": rss[1],
            "load_avg_1m_after": os.getloadavg()[0],
            "generator": os.environ.get("HYBRIDESK_GENERATOR", "auto"),
            "nlu_use_public_data": os.environ.get("HYBRIDESK_NLU_USE_PUBLIC_DATA", "true"),
        },
    )


if __name__ == "__main__":
    main()
