"""Intent accuracy on BANKING77 (official test split) and Bitext (stratified 80/20, seed 0).

Usage: .venv/bin/python benchmarks/nlu_intent.py [banking77|bitext ...]

Trains the product's intent head (MiniLM-LR + TF-IDF-SVM, temperature-calibrated) on each
training split and reports closed-set accuracy / macro-F1 of the ensemble and of each
component, calibration (ECE, NLL) and how many in-scope test messages the out-of-scope test
would wrongly reject.  Writes benchmarks/results/nlu_intent.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from nlu_common import cap_threads, macro_f1, shared_data_dir, table, write_result


def run(name: str, train: list[tuple[str, str]], test: list[tuple[str, str]]) -> dict:
    from bot.conversation.nlu import NLU
    from bot.conversation.nlu.intent import _log_softmax, expected_calibration_error

    t0 = time.perf_counter()
    model = NLU.train(train, None)
    train_s = time.perf_counter() - t0
    head = model.intent
    texts = [t for t, _ in test]
    gold = [y for _, y in test]
    t0 = time.perf_counter()
    emb = model.encoder.encode(texts)
    encode_s = time.perf_counter() - t0
    classes = np.array(head.classes_)
    index = {c: i for i, c in enumerate(head.classes_)}
    y = np.array([index[g] for g in gold])
    probs = head.predict_proba(texts, emb)
    pred = list(classes[probs.argmax(1)])
    emb_pred = list(classes[head.emb_clf.predict_log_proba(emb).argmax(1)])
    margin = head.svm.decision_function(head.vectorizer.transform(texts))
    svm_pred = list(classes[margin.argmax(1)])
    sims = head.max_similarity(emb)
    rejected = (probs.max(1) < head.conf_threshold) | (sims < head.sim_threshold)
    nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    raw = head.emb_clf.predict_log_proba(emb) + head.beta * margin
    uncal = np.exp(_log_softmax(raw))
    res = {
        "n_train": len(train),
        "n_test": len(test),
        "n_intents": len(classes),
        "accuracy": float(np.mean(np.array(pred) == np.array(gold))),
        "macro_f1": macro_f1(gold, pred),
        "emb_lr_accuracy": float(np.mean(np.array(emb_pred) == np.array(gold))),
        "tfidf_svm_accuracy": float(np.mean(np.array(svm_pred) == np.array(gold))),
        "ece": expected_calibration_error(probs, y),
        "ece_uncalibrated": expected_calibration_error(uncal, y),
        "nll": nll,
        "beta": head.beta,
        "temperature": head.temperature,
        "in_scope_rejected_rate": float(rejected.mean()),
        "accuracy_of_accepted": float(np.mean((np.array(pred) == np.array(gold))[~rejected])),
        "train_seconds": round(train_s, 1),
        "encode_ms_per_message_batched": round(1000 * encode_s / len(texts), 2),
    }
    table([(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in res.items()], name)
    return res


def main(which: list[str]) -> None:
    from bot.conversation.nlu.data import load_banking77, load_bitext, stratified_split

    cap_threads(2)
    data = shared_data_dir()
    out = {}
    if "banking77" in which:
        out["banking77"] = run(
            "BANKING77 (official test split)", load_banking77(data, "train"), load_banking77(data, "test")
        )
    if "bitext" in which:
        train, test = stratified_split(load_bitext(data), 0.2, seed=0)
        out["bitext"] = run("Bitext (stratified 80/20, seed 0)", train, test)
    if "sample" in which:
        # The company's own 312 tickets only, tested on all public Bitext tickets (same 27 intents):
        # how far a model trained on a small company's history generalises.
        from bot.conversation.nlu.data import load_tickets

        tickets = load_tickets(Path(__file__).resolve().parents[1] / "models" / "sample" / "tickets.jsonl")
        out["sample_to_bitext"] = run("sample tickets -> all Bitext tickets", tickets, load_bitext(data))
    path = write_result("nlu_intent", out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["banking77", "bitext", "sample"])
