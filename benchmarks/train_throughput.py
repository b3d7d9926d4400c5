"""Training throughput of LoRA fine-tuning on this machine: fp32 vs bf16, padded vs packed.

Usage::

    .venv/bin/python benchmarks/train_throughput.py [--steps 3] [--batch 8] [--length 128] [--threads 2]

Each configuration runs in its own subprocess (so peak memory is per configuration): LoRA r=8 on
all linear layers, the real prompt format over the sample tickets, ``--steps`` timed optimizer steps
after one warm-up step. Reported: tokens/s (real, non-padding tokens), seconds/step, peak RSS, and
the projected time of one epoch over the 4,514 public (bitext) tickets at that rate. Writes
``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFIGS = [
    {"name": "fp32 padded (bucketed)", "dtype": "float32", "packing": False},
    {"name": "fp32 packed", "dtype": "float32", "packing": True},
    {"name": "bf16 padded (bucketed)", "dtype": "bfloat16", "packing": False},
    {"name": "bf16 packed", "dtype": "bfloat16", "packing": True},
]


def _examples(cfg, tokenizer, shared: Path):
    from models.tickets import read_tickets
    from models.training import build_examples

    tickets, _ = read_tickets(REPO / "models" / "sample" / "tickets.jsonl", "sample")
    examples, _ = build_examples(tickets, tokenizer, cfg)
    return examples


def _epoch_tokens(cfg, tokenizer, shared: Path) -> int:
    """Real tokens in one epoch over all public tickets (prompt + reply, truncated to max_length)."""
    from models.tickets import read_tickets
    from models.training import build_examples

    path = shared / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    tickets, _ = read_tickets(path, "bitext")
    examples, _ = build_examples(tickets, tokenizer, cfg)
    return sum(len(e.input_ids) for e in examples), len(examples)


def run_one(spec: dict, args: argparse.Namespace) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from models.base import ensure_base_model, load_base_model
    from models.config import TrainConfig
    from models.training import make_batches, reply_loss

    torch.set_num_threads(args.threads)
    base_dir = Path(args.base_model_dir) if args.base_model_dir else ensure_base_model(Path(args.cache))
    dtype = torch.bfloat16 if spec["dtype"] == "bfloat16" else torch.float32
    model, tokenizer = load_base_model(base_dir, dtype)
    cfg = TrainConfig(
        batch_size=args.batch,
        max_length=args.length,
        packing=spec["packing"],
        max_reply_tokens=10_000,
        lora_dropout=0.0,
    )
    examples = _examples(cfg, tokenizer, Path(args.shared))
    model = get_peft_model(
        model,
        LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.0, target_modules=cfg.target_modules, task_type="CAUSAL_LM"
        ),
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    batches = make_batches(examples, cfg, random.Random(0), tokenizer.pad_token_id)
    real, padded, seconds = 0, 0, 0.0
    for i, batch in enumerate(batches[: args.steps + 1]):
        t0 = time.perf_counter()
        loss, _ = reply_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i == 0:
            continue  # warm-up
        seconds += dt
        padded += int(batch["input_ids"].numel())
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["num_tokens"])
    if seconds == 0:
        raise SystemExit(f"only {len(batches)} batch(es) at this length; lower --batch or raise --length")
    epoch_tokens, n_examples = _epoch_tokens(cfg, tokenizer, Path(args.shared))
    tps = real / seconds
    return {
        **spec,
        "batch": args.batch,
        "max_length": args.length,
        "threads": args.threads,
        "steps": args.steps,
        "seconds_per_step": seconds / args.steps,
        "tokens_per_s": tps,
        "padding_share": 1 - real / max(padded, 1),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024,
        "epoch_tokens": epoch_tokens,
        "epoch_examples": n_examples,
        "projected_epoch_min": epoch_tokens / tps / 60,
        "load_avg_1m": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="run one configuration (index), used by the subprocesses")
    parser.add_argument("--base-model-dir", default=os.environ.get("HYBRIDESK_BASE_MODEL_DIR"))
    parser.add_argument("--cache", default=str(REPO / "var" / "models"))
    parser.add_argument(
        "--shared", default=os.environ.get("HYBRIDESK_SHARED_DATA_DIR", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_throughput.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.only is not None:
        print(json.dumps(run_one(CONFIGS[int(args.only)], args)))
        return 0
    results = []
    for i, spec in enumerate(CONFIGS):
        cmd = [sys.executable, __file__, "--only", str(i)] + [
            f"--{k.replace('_', '-')}={v}"
            for k, v in vars(args).items()
            if k not in ("only", "out") and v is not None
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{spec['name']}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{r['name']:24} {r['tokens_per_s']:7.1f} tok/s  {r['seconds_per_step']:6.1f} s/step  "
            f"{r['peak_rss_gib']:.2f} GiB  epoch {r['projected_epoch_min']:.0f} min  (load {r['load_avg_1m']:.1f})",
            flush=True,
        )
    print()
    print("| configuration | tokens/s | s/step | padding | peak RSS | epoch over 4,514 tickets |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['tokens_per_s']:.1f} | {r['seconds_per_step']:.1f} | {r['padding_share']:.0%} | "
            f"{r['peak_rss_gib']:.2f} GiB | {r['projected_epoch_min']:.0f} min |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"results": results, "args": vars(args)}, indent=2), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
