"""Latency of one ``NLU.predict`` (intent + tone together) per message on this machine.

Usage: .venv/bin/python benchmarks/nlu_latency.py [N] [MODEL_DIR]

Trains the product model exactly as ``hybridesk nlu train`` does (sample tickets + Bitext +
TweetEval tone with its fine-tuned tone branch; the torch threads come from
``HYBRIDESK_TORCH_THREADS``, default 2), then times ``predict`` on N distinct held-out Bitext
messages, one at a time, with the embedding and tone-branch caches cleared before each call (so
nothing is a cache hit), on 2 and on 1 torch threads.  Also reports a cache hit, and a
follow-up with history, and the same model with its tone branch served the other ways (int8,
bfloat16, float32) on 2 threads.  The machine is shared: the load average is printed with the figures.
Writes benchmarks/results/nlu_latency.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import scratch_dir
from nlu_common import REPO, cap_threads, shared_data_dir, table, write_result


def main(n: int = 200, model_dir: str | None = None) -> None:
    from bot.conversation.nlu import NLURegistry
    from bot.conversation.nlu.data import load_bitext, stratified_split

    train_threads = cap_threads(2)
    data = shared_data_dir()

    if model_dir:  # time an already trained product model (e.g. from a previous run)
        from bot.conversation.nlu import NLU

        model, train_s = NLU.load(Path(model_dir)), float("nan")
    else:
        registry = NLURegistry(scratch_dir("nlu-latency-"))
        t0 = time.perf_counter()
        registry.train_default(REPO / "models" / "sample" / "tickets.jsonl", data, log_fn=print)
        train_s = time.perf_counter() - t0
        model = registry.current()
        print(f"product model trained in {train_s:.0f} s: {registry.root / model.version}")
    _, test = stratified_split(load_bitext(data), 0.2, seed=0)
    texts = [t for t, _ in test][:n]
    res: dict = {
        "n": len(texts),
        "cpu_count": os.cpu_count(),
        "product_train_seconds": round(train_s, 1),
        "train_torch_threads": train_threads,
        "model": model.metadata.get("method"),
        "traced_encoder": model.encoder.traced,
        "product_metadata_train_seconds": model.metadata.get("train_seconds"),
        "tone_metrics": {k: v for k, v in model.metadata.get("metrics", {}).get("tone", {}).items()
                         if k in ("mix_weight", "branch", "train_seconds", "encode_seconds")},
    }
    res["encoder"] = model.encoder.variant
    branch = model.tone.branch
    res["tone_branch"] = (None if branch is None else
                          {"layers": 6 - branch.start, "precision": branch.served_precision(),
                           "mix_weight": model.tone.branch_weight})
    for threads in (2, 1):
        import torch

        torch.set_num_threads(threads)
        res[f"threads_{threads}"] = measure(model, texts)
        table(
            [
                (k, f"{v:.2f}" if isinstance(v, float) else str(v))
                for k, v in res[f"threads_{threads}"].items()
            ],
            f"NLU latency per message (intent + tone), {threads} torch thread(s)",
        )
    if branch is not None:  # side by side: the same model with its tone branch served the other ways
        import torch

        from bot.conversation.nlu.branch import PRECISIONS

        torch.set_num_threads(2)
        served, serving = branch.precision, branch.served_precision()
        for other in PRECISIONS[1:]:  # every fixed precision ("auto" resolves to one)
            if other == serving:
                continue
            branch.precision, branch._graph = other, None
            res[f"threads_2_branch_{other}"] = measure(model, texts)
            table([(k, f"{v:.2f}" if isinstance(v, float) else str(v))
                   for k, v in res[f"threads_2_branch_{other}"].items()],
                  f"the same, tone branch served in {other}, 2 torch threads")
        branch.precision, branch._graph = served, None
    path = write_result("nlu_latency", res)
    print(f"\nwrote {path}")


def measure(model, texts: list[str]) -> dict:
    for t in texts[:10]:  # warm-up (first calls allocate)
        model.predict(t)
    times = []
    load_before = os.getloadavg()[0]
    for t in texts:
        model.clear_caches()
        s = time.perf_counter()
        model.predict(t)
        times.append((time.perf_counter() - s) * 1000)
    load_after = os.getloadavg()[0]
    hit = []
    for t in texts[:100]:  # fill the cache, then time the second reading
        model.predict(t)
    for t in texts[:100]:
        s = time.perf_counter()
        model.predict(t)
        hit.append((time.perf_counter() - s) * 1000)
    follow = []
    for t in texts[:50]:
        model.clear_caches()
        s = time.perf_counter()
        model.predict("and how long does that take?", history=[t])
        follow.append((time.perf_counter() - s) * 1000)
    emb_t = []  # where the time goes: the embedding alone
    for t in texts[:100]:
        model.clear_caches()
        s = time.perf_counter()
        model.encoder.encode_one(t)
        emb_t.append((time.perf_counter() - s) * 1000)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
        "embedding_only_p50_ms": float(np.percentile(emb_t, 50)),
        "embedding_only_p95_ms": float(np.percentile(emb_t, 95)),
        "cache_hit_p50_ms": float(np.percentile(hit, 50)),
        "cache_hit_p95_ms": float(np.percentile(hit, 95)),
        "follow_up_with_history_p50_ms": float(np.percentile(follow, 50)),
        "follow_up_with_history_p95_ms": float(np.percentile(follow, 95)),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
    }


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, sys.argv[2] if len(sys.argv) > 2 else None)
