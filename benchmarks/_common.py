"""Small helpers shared by the benchmark scripts (tables, JSON results, percentiles)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    widths = {c: max(len(str(c)), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = [" | ".join(str(c).ljust(widths[c]) for c in cols), "-+-".join("-" * widths[c] for c in cols)]
    lines += [" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory for one run, removed when the script exits.

    ``HYBRIDESK_BENCH_KEEP_TMP=1`` keeps it (its path is printed) for a look at what the run left.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("HYBRIDESK_BENCH_KEEP_TMP") == "1":
        print(f"scratch directory kept: {path}", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, path, True)
    return path


def write_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def product_services(data_dir: Path | None, prefix: str) -> Any:
    """The product's services over ``data_dir`` (an initialised data dir), or over a new one that
    `hybridesk init` sets up here (the KB imported, NLU trained on the sample and public tickets)."""
    import tempfile

    from bot.bootstrap import initialise
    from bot.services import Services
    from bot.settings import Settings

    services = Services(Settings(data_dir=data_dir or Path(tempfile.mkdtemp(prefix=prefix)), env="test"))
    if data_dir is None:
        initialise(services, admin_email=None, train_nlu=True, out=lambda _s: None)
    return services
