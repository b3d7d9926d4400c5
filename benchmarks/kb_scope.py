"""What the bot answers although the intent model is unsure: in-scope questions rescued, out-of-scope ones let in.

The intent model knows the ticket intents; the knowledge base covers more. When the model is unsure
(out of scope or low confidence) the manager asks the retrieved passages (`responder.answered_by_kb`):

* **words / lists**: a passage uses nearly every word of the message, or a list of the KB's answers it
  (`limits.in_knowledge_base`);
* **a fact**: a factual question ("What is your return window?") whose MiniLM match with a fact of a
  retrieved document is at least 0.5 (`responder.asks_kb_fact`), the bar the responder states facts at.

In scope, the sample company's questions: the freshness, procedure and limits benchmarks' questions
and `kb_scope_questions.json` (20 policy questions, the first ten of them ones exploratory QA saw asked
to rephrase). Out of scope, neither trained on nor used to set anything: BANKING77's test queries (a
neighbouring domain; some, such as refunds or card payments, are arguably in scope for a shop, so this
is pessimistic) and TweetEval emotion test tweets. Each message is read alone (no history), as its first
turn. Usage::

    .venv/bin/python benchmarks/kb_scope.py [--data-dir DIR]   # DIR: an initialised data dir (with NLU)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import product_services, table, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent


def in_scope_sets() -> dict[str, list[str]]:
    fresh = [q for it in json.loads((HERE / "freshness_questions.json").read_text()) for q in it["q"]]
    steps = [it["q"] for it in json.loads((HERE / "procedure_questions.json").read_text())]
    limits = [it["q"] for it in json.loads((HERE / "not_offered_questions.json").read_text())]
    return {"freshness": fresh, "procedures": steps, "limits": limits,
            "policy_questions": json.loads((HERE / "kb_scope_questions.json").read_text())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="an initialised data dir; default: a new one (trains NLU)")
    args = ap.parse_args()

    from bot.conversation.limits import in_knowledge_base
    from bot.conversation.nlu.data import load_banking77, load_tweeteval
    from bot.conversation.policy import unsure
    from bot.conversation.responder import Responder, asks_kb_fact, embedding_similarity

    services = product_services(args.data_dir, "hybridesk-scope-")
    knowledge, nlu = services.knowledge, services.nlu.current()
    products = services.product_words()
    similarity = embedding_similarity(knowledge)
    reader = Responder(knowledge, None, company_name="")
    shared = services.settings.shared_data_dir
    sets = {**in_scope_sets(),
            "banking77_test": [t for t, _ in load_banking77(shared, "test")],
            "tweeteval_test": [t for t, _ in load_tweeteval(shared, "test")]}

    rows, rescued = [], {}
    for name, texts in sets.items():
        started = time.perf_counter()
        n_unsure = by_words = by_fact = 0
        examples = []
        for text in texts:
            result = nlu.predict(text)
            if not unsure(result):
                continue
            n_unsure += 1
            passages = reader.retrieve(text, [])[0]  # as the manager reads
            if in_knowledge_base(text, passages, products, similarity):
                by_words += 1
            elif asks_kb_fact(text, passages, knowledge):
                by_fact += 1
                examples.append(text)
        n = len(texts)
        rows.append({"set": name, "n": n, "intent_model_unsure": n_unsure / n,
                     "rescued_words_or_list": by_words / n, "rescued_fact": by_fact / n,
                     "answered": (n - n_unsure + by_words + by_fact) / n,
                     "seconds": round(time.perf_counter() - started, 1)})
        rescued[name] = examples[:40]
        print(table(rows[-1:]), flush=True)
    print(table(rows))
    write_json("kb_scope", {"rows": rows, "rescued_by_fact": rescued})


if __name__ == "__main__":
    main()
