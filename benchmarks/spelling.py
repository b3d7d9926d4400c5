"""What the speller corrects, what it changes that it should not, and what it costs per message.

The speller (`bot/conversation/spelling.py`) reads misspelt words as the knowledge base spells them
before the NLU, the KB check and the responder read a message. Three measures, over the sample KB:

* **typos fixed**: this project's own misspelt customer questions (below), each with the spelling the
  KB uses; the share read right;
* **changed without need**: BANKING77's official test queries, real customer messages of a
  neighbouring domain that the KB never saw. Any change is counted, and the changed words are listed:
  some are genuine typos in the queries ("recieved"), the rest are false corrections;
* **cost**: microseconds per message over those queries (one process, after the vocabulary is built),
  and the time to build the vocabulary from the KB (once per index snapshot).

Usage: .venv/bin/python benchmarks/spelling.py   (HYBRIDESK_SHARED_DATA_DIR: the shared data)
"""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import summary, write_json  # noqa: E402
from nlu_common import shared_data_dir  # noqa: E402

from bot.conversation.spelling import KnowledgeSpeller, tokenizer_words  # noqa: E402
from knowledge.embeddings import default_embedding_model_dir  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "knowledge" / "sample"

# (what a customer typed, the words the KB spells differently)
TYPOS = [
    ("i forgot my pasword", {"pasword": "password"}),
    ("how do i downlaod my invoice", {"downlaod": "download"}),
    ("I never recieved my parcel", {"recieved": "received"}),
    ("what is the cancelation fee", {"cancelation": "cancellation"}),
    ("how do i change my delivery adress", {"adress": "address"}),
    ("how do i get a refnud", {"refnud": "refund"}),
    ("is there a warrenty on sofas", {"warrenty": "warranty"}),
    ("how much is deliverry to belgium", {"deliverry": "delivery"}),
    ("the vase arrived damagd", {"damagd": "damaged"}),
    ("can i pay with klarnna", {"klarnna": "klarna"}),
    ("how long is the retrun window", {"retrun": "return"}),
    ("where can i find my invoce", {"invoce": "invoice"}),
    ("do you shp to norway", {}),  # four letters: left alone
    ("can i use a giftcard and paypall", {"paypall": "paypal"}),
    ("how do i unsubscibe from the newsletter", {"unsubscibe": "unsubscribe"}),
    ("a peice is missing from the shelf", {"peice": "piece"}),
    ("how do i track my parcle", {"parcle": "parcel"}),
    ("what are your openning hours", {"openning": "opening"}),
    ("i want to cancle my order", {"cancle": "cancel"}),
    ("can i retrun an assembeld bookcase", {"retrun": "return", "assembeld": "assembled"}),
]


def main() -> None:
    texts = [p.read_text(encoding="utf-8") for p in sorted(SAMPLE.glob("*.md"))]
    known = tokenizer_words(default_embedding_model_dir())
    t0 = time.perf_counter()
    speller = KnowledgeSpeller(lambda: texts, lambda: 1, known)
    speller.speller()
    build_ms = (time.perf_counter() - t0) * 1000

    fixed = []
    for typed, expected in TYPOS:
        read = speller.correct(typed)
        want = typed
        for wrong, right in expected.items():
            want = want.replace(wrong, right)
        fixed.append({"typed": typed, "read": read, "right": read == want})

    with open(shared_data_dir() / "banking77" / "test.csv", newline="", encoding="utf-8") as f:
        queries = [row["text"] for row in csv.DictReader(f)]
    changed: Counter[str] = Counter()
    costs = []
    n_changed = 0
    for q in queries:
        t = time.perf_counter()
        read = speller.correct(q)
        costs.append((time.perf_counter() - t) * 1e6)
        if read != q:
            n_changed += 1
            for a, b in zip(q.split(), read.split(), strict=False):
                if a != b:
                    changed[f"{a} -> {b}"] += 1
    cost = summary(costs)
    result = {
        "kb_documents": len(texts),
        "vocabulary_build_ms": build_ms,
        "typos_right": sum(r["right"] for r in fixed),
        "typos": len(fixed),
        "typo_cases": fixed,
        "banking77_queries": len(queries),
        "banking77_changed": n_changed,
        "banking77_changes": changed.most_common(),
        "us_per_message": cost,
    }
    path = write_json("spelling", result)
    print(f"typos read as the KB spells them: {result['typos_right']} of {len(fixed)}")
    for r in fixed:
        if not r["right"]:
            print(f"   missed: {r['typed']!r} -> {r['read']!r}")
    print(f"BANKING77 test queries changed: {n_changed} of {len(queries)} ({n_changed / len(queries):.1%})")
    for change, n in changed.most_common(40):
        print(f"   {n:3d}  {change}")
    print(f"cost per message: p50 {cost['p50']:.1f} us, p95 {cost['p95']:.1f} us; vocabulary built in {build_ms:.0f} ms")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
