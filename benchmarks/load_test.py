"""Load test over loopback: N simulated customers, multi-turn conversations, bounded time.

Each customer starts a conversation, reads the live event stream, and sends a question, waits
for the reply, thinks, asks again until the time is up. The server is a real uvicorn subprocess
(tests/reliability/serve_app.py) over an initialised product (real NLU and knowledge index);
``--generator scripted`` replaces only the language model (``--delay`` seconds per word) so the
run measures the server itself, ``--generator real`` uses SmolLM2-135M. After the run the
reconciliation checks the database: every acknowledged message stored exactly once, in order.

Usage::

    .venv/bin/python benchmarks/load_test.py                       # 50 customers, scripted, SQLite + PostgreSQL
    .venv/bin/python benchmarks/load_test.py --generator real --customers 1,2,4 --duration 120 --db sqlite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reliability"), str(ROOT / "benchmarks")]

from _common import RESULTS, table  # noqa: E402
from harness import (  # noqa: E402
    ServerProcess,
    base_model_dir,
    pg_database,
    prepare_product,
    reconcile,
    run_load,
    start_postgres,
)


def products(dbs: list[str], log) -> tuple[dict[str, tuple[Path, str]], object | None]:
    """{db: (data dir, database URL)}; the PostgreSQL product shares the SQLite one's NLU."""
    base = base_model_dir()
    sqlite_dir = prepare_product("product-sqlite", base_model_dir=base, log=log)
    out = {"sqlite": (sqlite_dir, f"sqlite:///{sqlite_dir / 'hybridesk.db'}")}
    pg = None
    if "postgres" in dbs:
        pg = start_postgres()
        url = pg_database(pg, "hybridesk_load")
        out["postgres"] = (
            prepare_product(
                "product-postgres", database_url=url, share_nlu_from=sqlite_dir, base_model_dir=base, log=log
            ),
            url,
        )
    return out, pg


def one_run(
    db: str,
    data_dir: Path,
    url: str,
    *,
    customers: int,
    duration: float,
    generator: str,
    delay: float,
    think: tuple[float, float],
    log,
) -> dict:
    extra = ["--base-model-dir", str(base_model_dir())]
    srv = ServerProcess(
        data_dir,
        database_url=url if db == "postgres" else None,
        models="real",
        generator=generator,
        delay=delay,
        extra=extra,
        log_path=data_dir / f"server-{generator}-{customers}.log",
    )
    t0 = time.monotonic()
    srv.start(timeout=300)
    log(f"  server up in {time.monotonic() - t0:.1f} s ({db}, {generator}, {customers} customers)")
    try:
        result = run_load(
            srv.url,
            customers,
            duration,
            think=think,
            reply_timeout=120 if generator == "real" else 30,
            ramp_s=min(10.0, duration / 6),
            grace=60,
        )
    finally:
        srv.stop()
    report = reconcile(url, result)
    summary = result.summary()
    return {
        "db": db,
        "generator": generator,
        "delay_s_per_word": delay if generator == "scripted" else None,
        "think_s": list(think),
        **summary,
        "reconciliation": report,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--customers", default="50", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--generator", choices=["scripted", "real"], default="scripted")
    parser.add_argument("--delay", type=float, default=0.02, help="scripted: seconds per streamed word")
    parser.add_argument("--think", default="1,3", help="think time range between turns, seconds")
    parser.add_argument("--out", default=None, help="results/<out>.json (default load_test_<generator>)")
    args = parser.parse_args(argv)
    dbs = args.db.split(",")
    think = tuple(float(x) for x in args.think.split(","))
    out_name = args.out or f"load_test_{args.generator}"

    def log(msg: str) -> None:
        print(msg, flush=True)

    prods, pg = products(dbs, log)
    runs = []
    try:
        for db in dbs:
            for n in (int(x) for x in args.customers.split(",")):
                data_dir, url = prods[db]
                run = one_run(
                    db,
                    data_dir,
                    url,
                    customers=n,
                    duration=args.duration,
                    generator=args.generator,
                    delay=args.delay,
                    think=think,
                    log=log,
                )
                runs.append(run)
                log(json.dumps({k: v for k, v in run.items() if k != "reconciliation"}))
                log(
                    "  reconciliation: "
                    + json.dumps({k: v for k, v in run["reconciliation"].items() if k != "problems"})
                )
    finally:
        if pg is not None:
            pg.cleanup()
    rows = [
        {
            "db": r["db"],
            "gen": r["generator"],
            "customers": r["customers"],
            "msgs/s": r["msgs_per_s"],
            "acked": r["messages_acked"],
            "p50 s": r["reply_p50_s"],
            "p95 s": r["reply_p95_s"],
            "p99 s": r["reply_p99_s"],
            "p95 s, unanswered counted": r["reply_p95_all_s"],
            "5xx": r["server_errors_5xx"],
            "no reply": r["no_reply"],
            "lost": r["reconciliation"]["missing"],
            "dup": r["reconciliation"]["duplicated"],
            "order": "ok" if r["reconciliation"]["out_of_order"] == 0 else "BAD",
        }
        for r in runs
    ]
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out_name}.json").write_text(
        json.dumps(
            {
                "benchmark": "load_test",
                "args": vars(args),
                "runs": runs,
                "machine": "2 shared CPU cores (other sessions running: figures are pessimistic)",
            },
            indent=2,
        )
    )
    ok = all(r["reconciliation"]["ok"] and r["server_errors_5xx"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
