"""How-to questions: are the steps a customer reads the ones the knowledge base documents?

Issue #6: "Procedures are facts too ... a reply's steps must follow the retrieved procedure, not ones
the model made up." 24 how-to questions over the sample company (`procedure_questions.json`, each
with the document that holds its procedure) and 12 the KB documents no numbered procedure for
(`"doc": null`: the answer is prose, or not in the KB) are asked twice, side by side in one process,
with the active adapter on the product's generator:

* **model steps**: the reply as the model writes it, every step checked by the guardrail (screens the
  KB does not name are dropped), the responder's procedure statement switched off;
* **KB procedure** (the product): the steps of the best-matching retrieved procedure come after the
  model's opening sentence, and the model's own numbered steps are dropped.

The judge reads each numbered step the customer sees and looks for it, normalised (lower case,
letters and digits only, slots filled), in the text of every KB document: a step is *documented*
when it is found, and *from the right document* when it is found in the question's document. It
does not use the responder's matching. For the 12 questions without a procedure it counts the
replies that show one anyway (a procedure for something else). Usage::

    .venv/bin/python benchmarks/procedures.py [--limit N] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import scratch_dir, table, write_json  # noqa: E402

from bot.conversation.responder import Responder  # noqa: E402

QUESTIONS = Path(__file__).resolve().parent / "procedure_questions.json"
SAMPLE = Path(__file__).resolve().parents[1] / "knowledge" / "sample"
STEP = re.compile(r"^\s*\d{1,2}[.)]\s+(.+)$")


def norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def shown_steps(reply: str) -> list[str]:
    return [m.group(1) for line in reply.splitlines() if (m := STEP.match(line))]


def judge(reply: str, doc: str, corpus: dict[str, str]) -> dict:
    steps = shown_steps(reply)
    documented = [s for s in steps if any(norm(s) in text for text in corpus.values())]
    right = [s for s in steps if norm(s) in corpus.get(doc, "")]
    return {
        "steps": len(steps),
        "documented": len(documented),
        "from_right_doc": len(right),
        "undocumented": [s for s in steps if s not in documented],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()

    from bot.bootstrap import initialise
    from bot.services import Services
    from bot.settings import Settings

    data_dir = args.data_dir or scratch_dir("hybridesk-proc-")
    settings = Settings(data_dir=data_dir, env="test")
    services = Services(settings)
    initialise(services, admin_email=None, train_nlu=False, out=lambda _s: None)
    knowledge, generator = services.knowledge, services.generator
    adapter = services.active_adapter_id()
    print(f"adapter: {adapter}")
    corpus = {p.stem: norm(p.read_text(encoding="utf-8")) for p in SAMPLE.glob("*.md") if p.name != "SLOTS.md"}
    items = json.loads(QUESTIONS.read_text())[: args.limit or None]

    def ask(system: str, item: dict) -> dict:
        r = Responder(knowledge, generator, company_name=settings.company_name, adapter_id=adapter,
                      procedures=system == "kb_procedure")
        res = r.answer(text=item["q"], intent="how_to", tone="neutral", history=[])
        return {"q": item["q"], "doc": item["doc"], "reply": res.text, "raw": res.raw_output,
                "verdict": res.verdict, "procedure": res.guardrail.get("added_procedure"),
                **judge(res.text, item["doc"], corpus)}

    rows, details = [], {}
    for system in ("model_steps", "kb_procedure"):
        with ThreadPoolExecutor(args.workers) as pool:
            everything = list(pool.map(lambda it, s=system: ask(s, it), items))
        samples = [s for s in everything if s["doc"]]
        unanswerable = [s for s in everything if not s["doc"]]
        n = len(samples)
        steps = sum(s["steps"] for s in samples)
        rows.append({
            "system": system,
            "n": n,
            "replies_with_steps": sum(s["steps"] > 0 for s in samples) / n,
            "replies_with_right_procedure": sum(s["from_right_doc"] >= 2 for s in samples) / n,
            "replies_with_undocumented_step": sum(bool(s["undocumented"]) for s in samples) / n,
            "steps_shown": steps,
            "documented_step_share": sum(s["documented"] for s in samples) / steps if steps else None,
            "no_procedure_n": len(unanswerable),
            # a KB procedure shown for a question it does not answer: two or more of its steps on screen
            "no_procedure_showing_kb_steps": (sum(s["documented"] >= 2 for s in unanswerable) / len(unanswerable)
                                              if unanswerable else None),
            "no_procedure_with_undocumented_step": (sum(bool(s["undocumented"]) for s in unanswerable)
                                                    / len(unanswerable) if unanswerable else None),
        })
        details[system] = everything
        print(table(rows[-1:]))
    print(table(rows))
    write_json("procedures", {"adapter": adapter, "rows": rows, "details": details})


if __name__ == "__main__":
    main()
