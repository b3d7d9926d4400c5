"""Intent families on the product's own NLU model: which out-of-scope verdicts they turn into answers.

Session 17. The product model (the company's tickets + the public tickets + 40 out-of-scope examples)
called "How long does it take to process my refund once you get the return?" out of scope: its
probability was split between ``check_refund_policy`` (0.52) and ``track_refund`` (0.46), both under the
0.67 confidence threshold. With intent families, the
probability of intents that share a ticket category counts together for the verdict. This script
scores one trained model three ways, side by side: no families, the REFUND family (the default of
``HYBRIDESK_NLU_INTENT_FAMILIES``) and every category of the company's tickets merged, on

* in scope: the project's own customer questions (the limits, procedures and freshness benchmarks'
  questions), none of them training data;
* out of scope: the sample company's 40 out-of-scope examples (trained on as a class: optimistic) and
  TweetEval emotion test tweets (first 600); and BANKING77 test queries (every 5th), a neighbouring
  domain where refunds and card payments are arguably in scope for a shop.

For each set it counts the messages called out of scope and how many of those each family setting
accepts. `benchmarks/nlu_oos.py` measures the same on the Bitext-trained model. Usage::

    .venv/bin/python benchmarks/nlu_families.py --data-dir DIR   # DIR: an initialised data dir (with NLU)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import table, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def questions() -> list[str]:
    qs = [x["q"] for x in json.loads((HERE / "not_offered_questions.json").read_text(encoding="utf-8"))]
    qs += [x["q"] for x in json.loads((HERE / "procedure_questions.json").read_text(encoding="utf-8"))]
    fresh = json.loads((HERE / "freshness_questions.json").read_text(encoding="utf-8"))
    fresh = fresh if isinstance(fresh, list) else fresh.get("questions", [])
    qs += [q for x in fresh for q in x["q"]]
    return list(dict.fromkeys(qs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    args = ap.parse_args()
    from bot.conversation.nlu.data import load_categories
    from bot.services import Services
    from bot.settings import Settings

    settings = Settings(data_dir=args.data_dir)
    model = Services(settings).nlu.current()
    shared = Path(settings.shared_data_dir)
    categories = load_categories(settings.tickets_sample_path)
    sets = {
        "project questions (in scope)": questions(),
        "sample out-of-scope (trained on)": [json.loads(line)["text"] for line in
                                             (REPO / "models/sample/out_of_scope.jsonl").read_text().splitlines()],
        "TweetEval test tweets": (shared / "tweeteval_emotion/test_text.txt").read_text(encoding="utf-8")
        .splitlines()[:600],
        "BANKING77 test (every 5th)": [r["text"] for r in csv.DictReader(
            (shared / "banking77/test.csv").open(newline="", encoding="utf-8"))][::5],
    }
    settings_to_try = {"none": {}, "REFUND": {i: c for i, c in categories.items() if c == "REFUND"},
                       "every category": categories}
    shipped = dict(model.families)
    rows, out = [], {"model": model.version, "shipped_families": shipped, "sets": {}}
    for set_name, texts in sets.items():
        res: dict = {"n": len(texts)}
        for name, fam in settings_to_try.items():
            model.families = fam
            flagged = [t for t in texts if model.predict(t).out_of_scope]
            res[name] = {"out_of_scope": len(flagged), "examples": flagged[:8] if name == "none" else None}
        base = res["none"]["out_of_scope"]
        for name in ("REFUND", "every category"):
            res[name]["accepted"] = base - res[name]["out_of_scope"]
        out["sets"][set_name] = res
        rows.append({"set": set_name, "n": len(texts), "out of scope, no families": base,
                     "accepted by REFUND": res["REFUND"]["accepted"],
                     "accepted by every category": res["every category"]["accepted"]})
    model.families = shipped
    print(table(rows))
    print(f"wrote {write_json('nlu_families', out)}")


if __name__ == "__main__":
    main()
