"""Crash recovery: SIGKILL the server in the middle of a load, restart it, prove nothing is lost.

A real uvicorn subprocess over the initialised product (real NLU and knowledge index, scripted
generator with model-like latency so replies are mid-generation when the kill lands) serves N
customers; when at least three replies are half-written the process group gets SIGKILL, the
server restarts on the same data, and the customers carry on (unacknowledged sends are retried
with the same client_message_id). Reported: time to restart, time until every interrupted
message has a reply, the reconciliation, and the failed (half-written) replies kept.

Usage::

    .venv/bin/python benchmarks/crash_recovery.py [--customers 20] [--duration 60] [--kills 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reliability"), str(ROOT / "benchmarks")]

import sqlalchemy as sa  # noqa: E402
from _common import RESULTS, table  # noqa: E402
from harness import ServerProcess, base_model_dir, prepare_product, reconcile, run_load, wait_until  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per streamed word")
    args = parser.parse_args(argv)
    base = base_model_dir()
    data_dir = prepare_product("product-sqlite", base_model_dir=base)
    run_dir = data_dir.parent / "crash-run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    import shutil

    shutil.copytree(data_dir, run_dir, symlinks=True)  # a fresh copy: the product stays clean
    url = f"sqlite:///{run_dir / 'hybridesk.db'}"
    srv = ServerProcess(
        run_dir,
        models="real",
        delay=args.delay,
        extra=["--base-model-dir", str(base)],
        log_path=run_dir / "server.log",
    )
    srv.start(timeout=300)
    engine = sa.create_engine(url)
    kills: list[dict] = []

    def pending() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM messages WHERE status = 'pending'")).scalar()

    async def crash_loop() -> None:
        for _ in range(args.kills):
            await asyncio.sleep(args.duration / (args.kills + 1) / 2)
            await asyncio.to_thread(wait_until, lambda: pending() >= 3, 60)
            k = {"pending_at_kill": pending()}
            srv.kill()
            t0 = time.monotonic()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(srv.start, 300)
            k["restart_s"] = round(time.monotonic() - t0, 1)
            kills.append(k)

    result = run_load(
        srv.url,
        args.customers,
        args.duration,
        think=(1, 3),
        reply_timeout=120,
        grace=120,
        ramp_s=5,
        during=crash_loop,
    )
    t_end = time.monotonic()
    all_answered = wait_until(lambda: reconcile(url, result)["unanswered"] == 0, 300, interval=2)
    settle_s = round(time.monotonic() - t_end, 1)
    report = reconcile(url, result)
    srv.stop()
    engine.dispose()
    summary = result.summary()
    out = {
        "benchmark": "crash_recovery",
        "args": vars(args),
        "kills": kills,
        "load": summary,
        "reconciliation": report,
        "all_answered": all_answered,
        "settle_after_load_s": settle_s,
        "recovered_log_lines": srv.log().count("recovered"),
    }
    print(
        table(
            [
                {
                    "kills": len(kills),
                    "acked": summary["messages_acked"],
                    "lost": report["missing"],
                    "dup": report["duplicated"],
                    "out_of_order": report["out_of_order"],
                    "failed_kept": report["failed_replies"],
                    "unanswered": report["unanswered"],
                    "5xx": summary["server_errors_5xx"],
                    "restart_s": ",".join(str(k["restart_s"]) for k in kills),
                    "reply_p95_s": summary["reply_p95_s"],
                }
            ]
        )
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crash_recovery.json").write_text(json.dumps(out, indent=2))
    return 0 if report["ok"] and all_answered else 1


if __name__ == "__main__":
    sys.exit(main())
