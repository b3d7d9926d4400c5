"""Tone: macro-F1 of the emotion head on TweetEval emotion (official test split, 4 classes).

Usage: .venv/bin/python benchmarks/nlu_tone.py

Two heads are measured, both MiniLM-LR + TF-IDF-SVM, temperature-calibrated:
  * ``tweeteval_only``: trained on TweetEval train+val (the 4 benchmark classes);
  * ``product``: the head the product ships, which adds a "neutral" class (ordinary Bitext
    support requests) and Bitext's offensive-language requests as anger; on the benchmark its
    prediction is the best of the 4 emotion classes.
Writes benchmarks/results/nlu_tone.json.
"""

from __future__ import annotations

import time

import numpy as np
from nlu_common import cap_threads, macro_f1, shared_data_dir, table, write_result

EMO = ["anger", "joy", "optimism", "sadness"]


def main() -> None:
    from bot.conversation.nlu.data import load_tweeteval, tone_training_data
    from bot.conversation.nlu.encoder import shared_encoder
    from bot.conversation.nlu.intent import IntentHead

    cap_threads(2)
    data = shared_data_dir()
    enc = shared_encoder(None)
    test = load_tweeteval(data, "test")
    texts, gold = [t for t, _ in test], [y for _, y in test]
    test_emb = enc.encode(texts)
    out = {}
    for name, train in [
        ("tweeteval_only", load_tweeteval(data, "train") + load_tweeteval(data, "val")),
        ("product", tone_training_data(data)),
    ]:
        t0 = time.perf_counter()
        tr_texts = [t for t, _ in train]
        head = IntentHead(emb_c=2.0, svm_c=0.3)
        fit = head.fit(tr_texts, [y for _, y in train], enc.encode(tr_texts))
        secs = time.perf_counter() - t0
        probs = head.predict_proba(texts, test_emb)
        cols = [head.classes_.index(e) for e in EMO]
        pred = [EMO[i] for i in probs[:, cols].argmax(1)]
        emb_probs = head.emb_clf.predict_proba(test_emb)[:, cols]
        emb_pred = [EMO[i] for i in emb_probs.argmax(1)]
        res = {
            "n_train": len(train),
            "macro_f1": macro_f1(gold, pred, EMO),
            "emb_lr_macro_f1": macro_f1(gold, emb_pred, EMO),
            "accuracy": float(np.mean(np.array(pred) == np.array(gold))),
            "neutral_argmax_rate_on_tweets": float(
                np.mean(np.array(head.classes_)[probs.argmax(1)] == "neutral")
            )
            if "neutral" in head.classes_
            else 0.0,
            "beta": head.beta,
            "temperature": head.temperature,
            "holdout_ece": fit.get("holdout_ece"),
            "train_seconds": round(secs, 1),
        }
        out[name] = res
        table(
            [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in res.items()],
            f"TweetEval emotion test ({name})",
        )
    path = write_result("nlu_tone", out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
