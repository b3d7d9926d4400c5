"""The bot's own prompts replayed through the llama.cpp engine, prefilled by llama.cpp and by PyTorch.

Usage: python benchmarks/prompt_replay.py --data-dir DIR [--limit 10] [--adapter ID] [--rounds 2]
       [--weights q8_0] [--flash-attn 1,0] [--concurrency 16]

``serving_speed.py`` times one hand-built 526-token prompt. The prompts the bot really sends are
longer (the allowed-slot list, the facts, three policy passages and the history: about 1,000-1,200
tokens), and a server keeps earlier prompts in its cache for reuse. This script takes the last
``--limit`` prompts of a data dir's model-call log (``model_calls``, e.g. after
``benchmarks/first_reply.py --data-dir DIR``) and sends them one after another, ``--rounds`` times,
through one ``LlamaCppGenerator`` with the PyTorch prefill off, then through a new one with it on,
in this process, greedy, up to the bot's reply cap. It reports the first token and the whole reply
per setting, p50 / p95, and their ratio. Each ``--flash-attn`` value gets both prefill settings.
With ``--concurrency N``, each generator then also serves N conversations at once, each sending two
of the logged prompts back to back (different ones where the log has enough): aggregate tokens/s,
against the one-at-a-time tokens/s of the same generator.

Writes benchmarks/results/prompt_replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import scratch_dir, summary, table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def logged_prompts(data_dir: Path, limit: int) -> list[list[dict[str, str]]]:
    """The chat messages of the last ``limit`` generation calls in the data dir's SQLite database."""
    db = data_dir / "hybridesk.db"
    if not db.is_file():
        raise SystemExit(f"{db} does not exist: run the server on that data dir first (benchmarks/first_reply.py).")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select prompt from model_calls where kind = 'generate' and status = 'ok' order by id desc limit ?",
            (limit,),
        ).fetchall()
    if not rows:
        raise SystemExit(f"{db} has no logged generation calls.")
    return [json.loads(r[0]) for r in reversed(rows)]


def concurrent(gen, prompts, adapter: str | None, n: int, new_tokens: int) -> dict:
    """``n`` conversations at once, each sending two logged prompts back to back."""
    results: list = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)

    def ask(i: int) -> None:
        start.wait()
        for k in range(2):
            r = gen.generate(prompts[(2 * i + k) % len(prompts)], adapter_id=adapter, max_new_tokens=new_tokens)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r.completion_tokens for r in results)
    return {"conversations": n, "replies": len(results), "tokens": tokens, "wall_s": wall,
            "aggregate_tok_s": tokens / wall, "reply_s": summary([r.duration_s for r in results]),
            "first_token_s": summary([r.first_token_s or 0.0 for r in results])}


def replay(prompts, adapter: str | None, torch_prefill: bool, rounds: int, new_tokens: int, model_dir: Path,
           cache: Path, weights: str = "q8_0", flash_attn: int = 1, concurrency: int = 0) -> dict:
    from models.base import find_base_gguf
    from models.llamacpp import LlamaCppGenerator

    gen = LlamaCppGenerator(find_base_gguf(), model_dir, ROOT / "models/adapters", cache_dir=cache,
                            torch_prefill=torch_prefill, weights=weights, flash_attn=flash_attn)
    gen.warm(adapter)
    first, whole, tokens, prompt_tokens = [], [], 0, []
    started = time.perf_counter()
    for _ in range(rounds):
        for messages in prompts:
            t0 = time.perf_counter()
            r = gen.generate(messages, adapter_id=adapter, max_new_tokens=new_tokens)
            whole.append(time.perf_counter() - t0)
            first.append(r.first_token_s)
            tokens += r.completion_tokens
            prompt_tokens.append(r.prompt_tokens)
    elapsed = time.perf_counter() - started
    engine = gen.engine
    row = {
        "prefill": "PyTorch (int8 weights) + llama.cpp's last token" if torch_prefill else "llama.cpp",
        "weights": weights,
        "flash_attn": flash_attn,
        "replies": len(whole),
        "prompt_tokens": summary([float(p) for p in prompt_tokens]),
        "first_token_s": summary(first),
        "reply_s": summary(whole),
        "completion_tokens": tokens,
        "tokens_per_s_overall": tokens / elapsed,
        "pytorch_prefills": engine.torch_prefills,
        "prefix_tokens_reused": engine.prefix_tokens_reused,
    }
    if concurrency > 1:
        row["concurrent"] = concurrent(gen, prompts, adapter, concurrency, new_tokens)
        row["concurrent"]["x_one_at_a_time"] = row["concurrent"]["aggregate_tok_s"] / row["tokens_per_s_overall"]
    gen.close()
    return row


def main() -> None:
    from models.prompting import MAX_NEW_TOKENS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="times the whole list is sent (later rounds can reuse)")
    ap.add_argument("--new-tokens", type=int, default=MAX_NEW_TOKENS)
    ap.add_argument("--adapter", default=(ROOT / "models/adapters/ACTIVE").read_text(encoding="utf-8").strip())
    ap.add_argument("--weights", choices=["q8_0", "bf16", "shipped"], default="q8_0")
    ap.add_argument("--flash-attn", default="1", help="comma-separated 1 (on, the default) / 0 (off)")
    ap.add_argument("--concurrency", type=int, default=0, help="also serve this many conversations at once")
    args = ap.parse_args()
    from models.base import ensure_base_model

    prompts = logged_prompts(args.data_dir, args.limit)
    model_dir = ensure_base_model(Path(os.environ.get("HYBRIDESK_MODEL_CACHE", "/tmp/hybridesk-test-models")))
    cache = scratch_dir("hybridesk-replay-")
    load_before = os.getloadavg()[0]
    rows, ratios = [], {}
    for fa in (int(v) for v in args.flash_attn.split(",")):
        base, ours = (replay(prompts, args.adapter or None, tp, args.rounds, args.new_tokens, model_dir, cache,
                             args.weights, fa, args.concurrency) for tp in (False, True))
        rows += [base, ours]
        ratios[f"flash_attn={fa}"] = {
            "first_token_p50_x": base["first_token_s"]["p50"] / ours["first_token_s"]["p50"],
            "reply_p50_x": base["reply_s"]["p50"] / ours["reply_s"]["p50"],
            "reply_p95_x": base["reply_s"]["p95"] / ours["reply_s"]["p95"],
        }
    print(table([{
        "prefill": r["prefill"], "flash attn": r["flash_attn"], "replies": r["replies"],
        "prompt tokens p50": r["prompt_tokens"]["p50"],
        "first token p50": r["first_token_s"]["p50"], "first token p95": r["first_token_s"]["p95"],
        "reply p50": r["reply_s"]["p50"], "reply p95": r["reply_s"]["p95"],
        "tokens/s overall": r["tokens_per_s_overall"],
        **({f"{r['concurrent']['conversations']} at once tok/s": r["concurrent"]["aggregate_tok_s"],
            "x one at a time": r["concurrent"]["x_one_at_a_time"],
            "reply p50 at once": r["concurrent"]["reply_s"]["p50"]} if "concurrent" in r else {}),
    } for r in rows]))
    print(ratios)
    write_json("prompt_replay", {"data_dir_prompts": len(prompts), "rounds": args.rounds, "adapter": args.adapter,
                                 "weights": args.weights,
                                 "new_tokens": args.new_tokens, "load_avg_1m_before": load_before,
                                 "load_avg_1m_after": os.getloadavg()[0], "rows": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
