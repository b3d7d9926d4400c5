"""What the prompt's backward pass and the lower layers cost a training step, side by side.

Usage::

    HYBRIDESK_SHARED_DATA_DIR=../shared/data .venv/bin/python benchmarks/train_backward.py \
        [--config models/configs/every-ticket.yaml] [--steps 10] [--tickets 600] [--data-dir DIR]

One process, one base model (bf16 where the CPU has it), the same real batches for every setting:
the config's examples over a seeded sample of the public tickets (`--tickets`), length-bucketed as
training does, micro-batches of the config's ``max_batch_tokens``. Each setting trains a fresh LoRA
adapter for one warm-up step and ``--steps`` timed steps (backward, clipping, AdamW), and the four
run one after another in two rounds (ABCD ABCD) so that a drift in the machine's speed touches every
setting alike; a setting's time is the sum of its two rounds. Reported per setting: padded tokens/s,
seconds a step, the ratio to the full backward over every layer, the peak of resident memory seen
so far, the mean training loss of the timed steps (each round starts a fresh adapter), and the
epoch over every example the config keeps (all the public tickets and the sample company's)
projected at that speed. Writes
``benchmarks/results/train_backward.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import table, write_json  # noqa: E402

SETTINGS = [
    {"name": "every layer, full backward", "top": None, "prompt_backward": True},
    {"name": "every layer, prompt forward only", "top": None, "prompt_backward": False},
    {"name": "top 20 layers, full backward", "top": 20, "prompt_backward": True},
    {"name": "top 20 layers, prompt forward only", "top": 20, "prompt_backward": False},
]


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "models" / "configs" / "every-ticket.yaml"))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting and round")
    parser.add_argument("--tickets", type=int, default=600, help="public tickets the batches are drawn from")
    parser.add_argument("--data-dir", default=os.environ.get("HYBRIDESK_DATA_DIR", str(REPO / "var")),
                        help="where the converted base model is cached")
    parser.add_argument("--shared", default=os.environ.get("HYBRIDESK_SHARED_DATA_DIR",
                                                           str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default="train_backward")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from peft import LoraConfig, get_peft_model

    from models.base import load_base_model, resolve_base_model_dir
    from models.config import TrainConfig
    from models.tickets import read_tickets
    from models.training import (
        backward_batch,
        build_examples,
        make_batches,
        release_freed_memory,
        resolve_dtype,
        top_layers,
    )

    cfg = TrainConfig.from_yaml(args.config)
    csv = Path(args.shared) / cfg.bitext_csv
    if not csv.is_file():
        raise SystemExit(f"public tickets not found at {csv}: set HYBRIDESK_SHARED_DATA_DIR")
    torch.set_num_threads(cfg.num_threads)
    base_dir = resolve_base_model_dir(None, Path(args.data_dir))
    model, tokenizer = load_base_model(base_dir, resolve_dtype(cfg.dtype), num_threads=cfg.num_threads)
    model.config.use_cache = False
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    public, _ = read_tickets(csv, "bitext")
    own, _ = read_tickets(REPO / cfg.sample_tickets, "sample") if cfg.sample_tickets else ([], None)
    every, dropped = build_examples(public + own, tokenizer, cfg)
    epoch = make_batches(every, cfg, random.Random(0), pad_id)
    epoch_tokens, epoch_steps = sum(int(b["input_ids"].numel()) for b in epoch), len(epoch)
    sample = random.Random(cfg.seed).sample(public, min(args.tickets, len(public)))
    examples, _ = build_examples(sample, tokenizer, cfg)
    batches = make_batches(examples, cfg, random.Random(cfg.seed), pad_id)
    need = 2 * args.steps + 1
    if len(batches) < need:
        raise SystemExit(f"{len(batches)} batches from {args.tickets} tickets; {need} needed: raise --tickets")
    print(f"{len(every)} examples in the epoch ({dropped} left out), {epoch_steps} steps, "
          f"{epoch_tokens:,} padded tokens; timing on {need} batches of {len(examples)} sampled examples",
          flush=True)

    results = {s["name"]: {**s, "seconds": 0.0, "tokens": 0, "losses": []} for s in SETTINGS}
    for round_no in range(2):
        for setting in SETTINGS:
            row = results[setting["name"]]
            torch.manual_seed(cfg.seed)
            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
                              layers_to_transform=top_layers(model.config.num_hidden_layers, setting["top"]))
            peft_model = get_peft_model(model, lora)
            peft_model.train()
            params = [p for p in peft_model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
            # a fresh adapter each round: one warm-up batch (the same in both rounds), then this round's
            # --steps timed batches (the same for every setting)
            for i, batch in enumerate(batches[:1] + batches[1 + round_no * args.steps: 1 + (round_no + 1) * args.steps]):
                t0 = time.perf_counter()
                loss, _ = backward_batch(peft_model, batch, cfg.max_batch_tokens,
                                         prompt_backward=setting["prompt_backward"])
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                release_freed_memory()
                if i:
                    row["seconds"] += time.perf_counter() - t0
                    row["tokens"] += int(batch["input_ids"].numel())
                    row["losses"].append(round(loss, 4))
            row["peak_rss_gib_so_far"] = round(_rss_gib(), 2)
            model = peft_model.unload()
            print(f"round {round_no + 1}: {setting['name']}: {row['seconds']:.1f} s so far", flush=True)

    base_rate = None
    rows = []
    for row in results.values():
        rate = row["tokens"] / row["seconds"]
        base_rate = base_rate or rate
        row.update(tokens_per_s=round(rate, 1), seconds_per_step=round(row["seconds"] / (2 * args.steps), 2),
                   speedup=round(rate / base_rate, 3), projected_epoch_min=round(epoch_tokens / rate / 60, 1),
                   mean_loss=round(sum(row["losses"]) / len(row["losses"]), 4))
        rows.append({"setting": row["name"], "tok/s": row["tokens_per_s"], "s/step": row["seconds_per_step"],
                     "speed-up": row["speedup"], "epoch min": row["projected_epoch_min"],
                     "peak RSS GiB": row["peak_rss_gib_so_far"], "mean loss": row["mean_loss"]})
    print(table(rows))
    path = write_json(args.out, {
        "config": str(Path(args.config).resolve().relative_to(REPO)) if Path(args.config).resolve().is_relative_to(REPO)
        else args.config,
        "epoch_examples": len(every), "epoch_left_out": dropped, "epoch_steps": epoch_steps,
        "epoch_padded_tokens": epoch_tokens, "timed_steps_per_setting": 2 * args.steps,
        "sampled_tickets": len(sample), "dtype": str(model.dtype), "load_avg_1m_at_end": os.getloadavg()[0],
        "settings": list(results.values()),
        "note": "peak RSS is the process's peak so far, so it only grows from one setting to the next",
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
