"""`make reliability`: run every reliability and security measurement once and print ONE summary table.

Runs, in order (each writes its own results/<name>.json):

1. load_test.py          50 customers, scripted generator, SQLite and PostgreSQL
2. load_test.py          real SmolLM2 generator at 1, 2 and 4 customers (SQLite)
3. crash_recovery.py     SIGKILL twice under load, restart, reconcile
4. fault_injection.py    generator raise/hang, corrupt index, PostgreSQL outage
5. hostile_input.py      schemathesis fuzzing, malformed input, access control, XSS in Chromium
6. prompt_injection.py   34 attacks against the real pipeline

``--summary-only`` prints the table from the JSON files already in benchmarks/results
(the whole run takes about an hour on two shared cores). ``--skip a,b`` skips steps by name.

Usage::

    .venv/bin/python benchmarks/reliability.py [--summary-only] [--skip prompt_injection,load_real]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH))

from _common import table  # noqa: E402

STEPS = {
    "load_scripted": ["load_test.py", "--db", "sqlite,postgres", "--customers", "50", "--duration", "60"],
    "load_real": [
        "load_test.py",
        "--generator",
        "real",
        "--db",
        "sqlite",
        "--customers",
        "1,2,4",
        "--duration",
        "120",
        "--think",
        "2,6",
    ],
    "crash_recovery": ["crash_recovery.py"],
    "fault_injection": ["fault_injection.py"],
    "hostile_input": ["hostile_input.py"],
    "prompt_injection": ["prompt_injection.py"],
}


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary_rows() -> list[dict]:
    rows: list[dict] = []

    def row(area: str, measure: str, value: object, target: str, ok: bool | None) -> None:
        rows.append(
            {
                "area": area,
                "measure": measure,
                "value": value,
                "target": target,
                "status": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
            }
        )

    for name, label in (
        ("load_test_scripted", "load (server, scripted LM)"),
        ("load_test_real", "load (real LM)"),
    ):
        data = _load(name)
        for run in (data or {}).get("runs", []):
            rec = run["reconciliation"]
            tag = f"{label} {run['db']} x{run['customers']}"
            row(
                tag,
                "msgs/s | reply p50/p95/p99 s",
                f"{run['msgs_per_s']} | {run['reply_p50_s']}/{run['reply_p95_s']}/{run['reply_p99_s']}",
                "p95 < 5 s",
                run["reply_p95_s"] is not None and run["reply_p95_s"] < 5,
            )
            row(
                tag,
                "acked: lost/dup/out-of-order, 5xx",
                f"{run['messages_acked']}: {rec['missing']}/{rec['duplicated']}/{rec['out_of_order']}, "
                f"{run['server_errors_5xx']}",
                "0/0/0, 0",
                rec["ok"] and run["server_errors_5xx"] == 0,
            )
        if data is None:
            row(label, "not run", "-", "-", None)
    crash = _load("crash_recovery")
    if crash:
        rec = crash["reconciliation"]
        row(
            "crash recovery",
            f"{len(crash['kills'])} SIGKILLs: lost/dup/unanswered, failed kept",
            f"{rec['missing']}/{rec['duplicated']}/{rec['unanswered']}, {rec['failed_replies']}",
            "0/0/0, >0",
            rec["ok"] and crash["all_answered"] and rec["failed_replies"] > 0,
        )
        row("crash recovery", "restart s", ",".join(str(k["restart_s"]) for k in crash["kills"]), "-", None)
    else:
        row("crash recovery", "not run", "-", "-", None)
    for name, area in (("fault_injection", "fault injection"), ("hostile_input", "hostile input + access")):
        data = _load(name)
        if not data:
            row(area, "not run", "-", "-", None)
            continue
        c = data["counts"]
        row(
            area,
            "tests passed / known bugs (xfail) / failed",
            f"{c.get('passed', 0)} / {c.get('xfail', 0)} / {c.get('failed', 0)}",
            "0 failed",
            c.get("failed", 0) == 0,
        )
    inj = _load("prompt_injection")
    if inj:
        row(
            "prompt injection",
            "successful attacks / attempts",
            f"{inj['successes']} / {inj['attempts']}",
            "0",
            inj["successes"] == 0,
        )
    else:
        row("prompt injection", "not run", "-", "-", None)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--skip", default="")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if not args.summary_only:
        for name, cmd in STEPS.items():
            if name in skip:
                continue
            print(f"== {name}: {' '.join(cmd)}", flush=True)
            log = RESULTS / f"{name}.log"
            with log.open("w") as out:
                rc = subprocess.run(
                    ["nice", "-n", "10", sys.executable, str(BENCH / cmd[0]), *cmd[1:]],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ).returncode
            print(f"   exit {rc}; log in {log.relative_to(ROOT)}", flush=True)
    rows = summary_rows()
    print(table(rows))
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
