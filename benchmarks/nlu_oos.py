"""Out-of-scope detection, tested on messages the model never saw (nor anything like them).

Usage: .venv/bin/python benchmarks/nlu_oos.py

Setup: the intent model is trained on Bitext's e-commerce tickets (stratified 80%, seed 0) and
its thresholds come from held-out *in-scope* messages only.  In-scope test: the other 20%.
Out-of-scope tests, none used in training or threshold setting:
  * TweetEval emotion test tweets (clearly unrelated chatter);
  * BANKING77 test queries (a neighbouring domain: some, e.g. refunds, passwords or payment
    problems, are arguably in scope for a shop, so this is a hard, pessimistic test);
  * the sample company's out_of_scope.jsonl, when present (only in the run without it).
A second run adds the sample out-of-scope examples as a training class, and is scored on the
public sets only.  Precision and recall are of the out-of-scope verdict; precision is given on
the in-scope test mixed with each out-of-scope set.  Each run is also scored with intent families
(the REFUND intents counted together, the product default, and every Bitext category merged), on the
same model.  Writes benchmarks/results/nlu_oos.json.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from nlu_common import REPO, cap_threads, shared_data_dir, table, write_result


def bitext_categories(data) -> dict[str, str]:
    """Each Bitext intent's category ("get_refund" -> "REFUND"), from the CSV's own column."""
    import csv

    from bot.conversation.nlu.data import BITEXT_CSV

    with (data / BITEXT_CSV).open(newline="", encoding="utf-8") as fh:
        return {r["intent"].strip(): r["category"].strip().upper() for r in csv.DictReader(fh)}


def verdicts(model, texts: list[str]) -> tuple[np.ndarray, Counter]:
    results = model.predict_many(texts)
    return np.array([r.out_of_scope for r in results]), Counter(r.reason for r in results if r.out_of_scope)


def main() -> None:
    from bot.conversation.nlu import NLU
    from bot.conversation.nlu.data import (
        load_banking77,
        load_bitext,
        load_out_of_scope,
        load_tweeteval,
        stratified_split,
    )

    cap_threads(2)
    data = shared_data_dir()
    train, test = stratified_split(load_bitext(data), 0.2, seed=0)
    categories = bitext_categories(data)
    sample_oos = load_out_of_scope(REPO / "models" / "sample" / "out_of_scope.jsonl")
    oos_sets = {
        "tweeteval_test": [t for t, _ in load_tweeteval(data, "test")],
        "banking77_test": [t for t, _ in load_banking77(data, "test")],
    }
    out: dict = {"in_scope_test": len(test), "sample_out_of_scope_examples": len(sample_oos)}
    runs = [
        ("thresholds_only", [], {**oos_sets, **({"sample_out_of_scope": sample_oos} if sample_oos else {})})
    ]
    if sample_oos:
        runs.append(("with_sample_oos_class", sample_oos, oos_sets))
    for name, oos_train, sets in runs:
        model = NLU.train(train, None, out_of_scope=oos_train)
        in_flag, in_reasons = verdicts(model, [t for t, _ in test])
        pred = [r.intent for r in model.predict_many([t for t, _ in test])]
        acc_accepted = float(
            np.mean([p == y for p, (_, y) in zip(pred, test, strict=True) if p != "out_of_scope"])
        )
        res = {
            "in_scope_flagged_rate": float(in_flag.mean()),
            "in_scope_reasons": dict(in_reasons),
            "in_scope_accuracy_of_accepted": acc_accepted,
            "conf_threshold": model.intent.conf_threshold,
            "sim_threshold": model.intent.sim_threshold,
        }
        rows = [("in-scope flagged (false OOS)", f"{in_flag.mean():.3f} of {len(test)}")]
        for set_name, texts in sets.items():
            flag, reasons = verdicts(model, texts)
            tp, fp = int(flag.sum()), int(in_flag.sum())
            recall = tp / len(texts)
            precision = tp / (tp + fp) if tp + fp else 0.0
            res[set_name] = {
                "n": len(texts),
                "recall": recall,
                "precision_vs_in_scope_test": precision,
                "reasons": dict(reasons),
            }
            rows.append((f"{set_name} (n={len(texts)})", f"recall {recall:.3f}  precision {precision:.3f}"))
        # intent families (session 17): a message split between intents of one category is not out of
        # scope. Scored side by side on the same model: the REFUND family (the product default) and every
        # category merged, to show why the default is not "every category".
        res["with_families"] = {}
        for fam_name, fam in (("refund_family", {i: c for i, c in categories.items() if c == "REFUND"}),
                              ("every_category", categories)):
            model.families = fam
            f_flag, f_reasons = verdicts(model, [t for t, _ in test])
            fam_res: dict = {"families": fam, "in_scope_flagged_rate": float(f_flag.mean())}
            rows.append((f"{fam_name}: in-scope flagged", f"{f_flag.mean():.3f} of {len(test)}"))
            for set_name, texts in sets.items():
                flag, _ = verdicts(model, texts)
                tp, fp = int(flag.sum()), int(f_flag.sum())
                fam_res[set_name] = {"recall": tp / len(texts), "precision_vs_in_scope_test": tp / (tp + fp)
                                     if tp + fp else 0.0}
                rows.append((f"{fam_name}: {set_name}", f"recall {tp / len(texts):.3f}  precision "
                             f"{fam_res[set_name]['precision_vs_in_scope_test']:.3f}"))
            res["with_families"][fam_name] = fam_res
        model.families = {}
        out[name] = res
        table(rows, f"out-of-scope verdict ({name})")
    path = write_result("nlu_oos", out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
