"""Helpers shared by the ``benchmarks/nlu_*.py`` scripts (paths, timing, JSON output)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = REPO / "benchmarks" / "results"


def shared_data_dir() -> Path:
    path = Path(os.environ.get("HYBRIDESK_SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        sys.exit(f"shared data not found at {path} (set HYBRIDESK_SHARED_DATA_DIR)")
    return path


def cap_threads(n: int = 2) -> int:
    """Torch threads for a benchmark: ``HYBRIDESK_TORCH_THREADS`` when set (1 on a busy shared machine), else ``n``."""
    import torch

    n = int(os.environ.get("HYBRIDESK_TORCH_THREADS", n))
    torch.set_num_threads(n)
    return n


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def table(rows: list[tuple[str, str]], title: str) -> None:
    print(f"\n{title}")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def macro_f1(gold: list[str], pred: list[str], labels: list[str] | None = None) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=labels or sorted(set(gold)), average="macro", zero_division=0))
