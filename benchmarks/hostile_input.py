"""Hostile input and access control: run the suites once and record each outcome.

tests/reliability/test_hostile_input.py (schemathesis fuzzing of every OpenAPI operation,
oversized/nested/invalid-UTF-8 bodies, raw header abuse), test_access_control.py (customer A vs
B, anonymous console, 429s, secrets in logs) and test_xss_browser.py (stored XSS in the widget and
the console, real Chromium). Writes results/hostile_input.json.

Usage::

    .venv/bin/python benchmarks/hostile_input.py
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
    result = run_pytest_suite(
        [
            "tests/reliability/test_hostile_input.py",
            "tests/reliability/test_access_control.py",
            "tests/reliability/test_xss_browser.py",
        ],
        "hostile_input",
    )
    print(
        table(
            [{"check": t["test"][:70], "outcome": t["outcome"], "s": t["seconds"]} for t in result["tests"]]
        )
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hostile_input.json").write_text(json.dumps(result, indent=2))
    return 0 if result["counts"].get("failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
