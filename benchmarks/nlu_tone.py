"""Tone: macro-F1 of the emotion model on TweetEval emotion (official test split, 4 classes).

Usage: .venv/bin/python benchmarks/nlu_tone.py [--seeds 0,1] [--layers 3] [--no-tweeteval-only]

Trains the tone model exactly as ``hybridesk nlu train`` does (:func:`model.train_tone` on the
product's tone data: TweetEval train + 1,200 neutral and the offensive Bitext requests, with a
fine-tuned tone branch early-stopped on TweetEval's validation split and mixed with the
MiniLM-LR + TF-IDF-SVM head, mixing weight chosen on the validation split), and reports test
macro-F1 of the head alone, the branch alone and the shipped mix.  On the benchmark the
prediction is the best of the 4 emotion classes.  Also reports the previous head-only recipe
trained on TweetEval train+val alone (``tweeteval_only``), for comparison.
Writes benchmarks/results/nlu_tone.json.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from nlu_common import cap_threads, macro_f1, shared_data_dir, table, write_result

EMO = ["anger", "joy", "optimism", "sadness"]


def scores(name: str, classes: list[str], probs: np.ndarray, gold: list[str]) -> dict:
    cols = [classes.index(e) for e in EMO]
    pred = [EMO[i] for i in probs[:, cols].argmax(1)]
    return {f"{name}_macro_f1": macro_f1(gold, pred, EMO),
            f"{name}_accuracy": float(np.mean(np.array(pred) == np.array(gold)))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--soup", type=int, default=None, help="branch runs averaged into one (default: the product's)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("HYBRIDESK_TORCH_THREADS", "1")))
    ap.add_argument("--no-tweeteval-only", action="store_true")
    args = ap.parse_args()
    from bot.conversation.nlu.branch import PRECISIONS
    from bot.conversation.nlu.data import load_tweeteval, tone_training_data
    from bot.conversation.nlu.encoder import DEFAULT_VARIANT, shared_encoder
    from bot.conversation.nlu.intent import IntentHead
    from bot.conversation.nlu.model import (
        TONE_BRANCH_EPOCHS,
        TONE_BRANCH_LAYERS,
        TONE_BRANCH_SOUP,
        train_tone,
    )
    from bot.conversation.nlu.text import coerce_text, model_text
    from bot.conversation.nlu.tone import mix

    cap_threads(args.threads)
    layers = TONE_BRANCH_LAYERS if args.layers is None else args.layers
    epochs = TONE_BRANCH_EPOCHS if args.epochs is None else args.epochs
    soup = TONE_BRANCH_SOUP if args.soup is None else args.soup
    data = shared_data_dir()
    enc = shared_encoder(None, DEFAULT_VARIANT)
    test = load_tweeteval(data, "test")
    # the product reads every message through model_text (emoji spelled out, from NLU format 3)
    texts, gold = [model_text(coerce_text(t), emoji_names=True) for t, _ in test], [y for _, y in test]
    out: dict = {"encoder": DEFAULT_VARIANT, "torch_threads": args.threads, "branch_layers": layers,
                 "branch_epochs": epochs, "branch_soup": soup, "load_average_1min_start": round(os.getloadavg()[0], 2)}
    t0 = time.perf_counter()
    start = 6 - layers
    test_emb, test_hidden = enc.encode_with_hidden(texts, start)
    if not args.no_tweeteval_only:
        train = load_tweeteval(data, "train") + load_tweeteval(data, "val")
        tr_texts = [t for t, _ in train]
        head = IntentHead(emb_c=2.0, svm_c=0.3)
        head.fit(tr_texts, [y for _, y in train], enc.encode(tr_texts))
        res = scores("head", head.classes_, head.predict_proba(texts, test_emb), gold)
        out["tweeteval_only"] = {"n_train": len(train), **res}
        table([(k, f"{v:.4f}") for k, v in res.items()], "head only, TweetEval train+val (previous recipe)")
    mixes = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        tone, metrics = train_tone(enc, tone_training_data(data, include_val=False), load_tweeteval(data, "val"),
                                   branch_layers=layers, epochs=epochs, seed=seed, log_fn=print,
                                   soup=soup)
        head = tone.head
        head_p = head.predict_proba(texts, test_emb)
        res: dict = {"seed": seed, "n_train": metrics.get("branch", {}).get("n_train"),
                     **scores("head", head.classes_, head_p, gold)}
        if tone.branch is not None:
            branch_p = np.stack([tone.branch_probs_for_head(tone.branch.probs_from_hidden(h)) for h in test_hidden])
            res |= scores("branch", head.classes_, branch_p, gold)
            mixed = mix(head_p, branch_p, tone.branch_weight)
            mixes.append((head_p, branch_p, tone.branch_weight))
            res |= scores("shipped_mix", head.classes_, mixed, gold)
            res["branch_precision"] = tone.branch.served_precision()
            served = tone.branch.precision
            for other in PRECISIONS[1:]:  # the same weights served the other ways ("auto" is one of them)
                if other == res["branch_precision"]:
                    continue
                tone.branch.precision, tone.branch._graph = other, None
                other_p = np.stack([tone.branch_probs_for_head(tone.branch.probs_from_hidden(h))
                                    for h in test_hidden])
                res |= scores(f"branch_{other}", head.classes_, other_p, gold)
                res |= scores(f"mix_{other}", head.classes_, mix(head_p, other_p, tone.branch_weight), gold)
            tone.branch.precision, tone.branch._graph = served, None
            res["mix_weight"] = tone.branch_weight
            res["validation_macro_f1_by_weight"] = metrics["validation_macro_f1_by_weight"]
            res["branch_info"] = metrics["branch"]
        res["tone_train_seconds"] = metrics["train_seconds"]
        out[f"product_seed{seed}"] = res
        table([(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in res.items()], f"product, seed {seed}")
    if len(mixes) > 1:  # what averaging several seeds' branches would give (costs one branch per seed)
        branch_avg = np.mean([b for _, b, _ in mixes], axis=0)
        w = float(np.mean([w for _, _, w in mixes]))
        out["seed_ensemble"] = {**scores("branch_avg", head.classes_, branch_avg, gold),
                                **scores("mix_avg", head.classes_, mix(mixes[0][0], branch_avg, w), gold),
                                "mix_weight": w}
        table([(k, f"{v:.4f}") for k, v in out["seed_ensemble"].items()], "seed ensemble")
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    path = write_result("nlu_tone", out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
