"""Fault injection: run the fault scenarios once and record each outcome.

The scenarios live in tests/reliability/test_faults.py (generator raising mid-stream, a hung
generator, six kinds of missing/corrupt vector index, PostgreSQL stopped and restarted under a
live server); a scenario that exposes a known bug is marked xfail there with the bug's
location. This script runs them once (niced) and writes results/fault_injection.json.

Usage::

    .venv/bin/python benchmarks/fault_injection.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "reliability"), str(ROOT / "benchmarks")]

from _common import RESULTS, table  # noqa: E402
from harness import run_pytest_suite  # noqa: E402


def main() -> int:
    result = run_pytest_suite(["tests/reliability/test_faults.py"], "fault_injection")
    print(
        table(
            [
                {"scenario": t["test"][:70], "outcome": t["outcome"], "s": t["seconds"]}
                for t in result["tests"]
            ]
        )
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fault_injection.json").write_text(json.dumps(result, indent=2))
    return 0 if result["counts"].get("failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
