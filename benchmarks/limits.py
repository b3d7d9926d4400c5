"""Questions about what the policy rules out: does the customer read the policy's no, or the model's yes?

Issue #6: "Prompt-injection attempts ... never produce a promise the policy does not make" and "a KB
with no matching policy ... never invents one". The small model says yes to nearly anything: asked "Do
you accept cheques?" it wrote "Absolutely! We accept cheques." `not_offered_questions.json` holds 20
questions about things the sample KB rules out (each with the KB sentence that does), 8 about things
of a kind the KB lists whose list does not name them (`"kind": "not_listed"`: "Do you accept Bitcoin?",
with the list's sentence) and 16 about things it allows (`"kb": null`). Each is asked twice, side by side in one process, with the product's
intent/tone model, policy and active adapter:

* **before**: both of this change's parts switched off, everything else as in the product: an intent
  the model calls out of scope is asked to rephrase, and the responder reads no limits
  (`Responder(limits=False)`);
* **now**: an out-of-scope verdict is overruled when a retrieved passage uses nearly every word of
  the question (`limits.covers`), and what the policy rules out is answered with its sentence, the
  model's yes and its unqualified sentences about the thing dropped.

The judge does not use the responder's matching: a reply *states the no* when it contains the KB
sentence (normalised); it *opens with yes* when its first sentence starts with "Certainly", "Of
course", "Absolutely", "Yes", "Sure" or "Definitely"; *clarify* is a request to rephrase. For the
questions about allowed things it counts replies that open with a no ("I'm afraid"). Every reply is
written to `results/limits.json` for reading by hand. Usage::

    .venv/bin/python benchmarks/limits.py [--data-dir DIR]   # DIR: an initialised data dir (with NLU)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import product_services, table, write_json  # noqa: E402

QUESTIONS = Path(__file__).resolve().parent / "not_offered_questions.json"
YES = re.compile(r"^\s*(?:I'm sorry[^.!?]*[.!?]\s*)?(?:certainly|of course|absolutely|yes|sure|definitely)\b", re.I)


def norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def product_reply(services, question: str, *, limits: bool = True, **responder_kw) -> tuple[object, str]:
    """What the product answers to ``question`` as the first message of a chat: the manager's decision
    (with its KB-coverage gate when ``limits``) and the reply text. ``responder_kw`` switch the
    responder's features off for a baseline."""
    from bot.conversation.actions import CLARIFY_TEXT
    from bot.conversation.policy import decide, unsure
    from bot.conversation.responder import Responder, answered_by_kb

    knowledge, nlu = services.knowledge, services.nlu.current()
    products = services.product_words()  # what the manager and the answer action read
    result = nlu.predict(question)
    in_kb = False
    if limits and unsure(result):
        passages = Responder(knowledge, None, company_name="").retrieve(question, [])[0]  # as the manager reads
        in_kb = answered_by_kb(question, passages, knowledge, products)
    decision = decide(question, result, {}, in_knowledge_base=in_kb)
    if decision.action != "answer":
        return decision, CLARIFY_TEXT if decision.action == "clarify" else f"({decision.action})"
    intent = result.top[0][0] if result.intent == "out_of_scope" and result.top else result.intent
    responder = Responder(knowledge, services.generator, company_name=services.settings.company_name,
                          adapter_id=services.active_adapter_id(), limits=limits,
                          products=products if limits else (), **responder_kw)
    return decision, responder.answer(text=question, intent=intent, tone=result.tone.label, history=[]).text


def run_question_set(doc: str, name: str, questions: Path, systems: list[str],
                     ask: Callable[[object, str, dict], dict], summarise: Callable[[str, list[dict]], dict]) -> None:
    """The frame this benchmark and ``yes_no.py`` share: ``--data-dir``, the product's services, every
    question asked by each system in turn (``ask(services, system, item)``), one row per system
    (``summarise(system, replies)``), a table, and ``results/<name>.json`` with every reply."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, help="an initialised data dir; default: a new one (trains NLU)")
    args = ap.parse_args()

    services = product_services(args.data_dir, f"hybridesk-{name.replace('_', '-')}-")
    adapter = services.active_adapter_id()
    print(f"adapter: {adapter}")
    items = json.loads(questions.read_text())
    rows, details = [], {}
    for system in systems:
        done = [ask(services, system, it) for it in items]
        rows.append({"system": system, **summarise(system, done)})
        details[system] = done
        print(table(rows[-1:]), flush=True)
    print(table(rows))
    write_json(name, {"adapter": adapter, "rows": rows, "details": details})


def main() -> None:
    def ask(services, system: str, item: dict) -> dict:
        q = item["q"]
        decision, text = product_reply(services, q, limits=system == "now")
        return {"q": q, "kb": item["kb"], "kind": item.get("kind") or ("ruled_out" if item["kb"] else "allowed"), "action": decision.action, "reason": decision.reason, "reply": text,
                "states_no": bool(item["kb"]) and norm(item["kb"]) in norm(text),
                "opens_yes": bool(YES.match(text)), "opens_no": "I'm afraid" in text.split("\n")[0][:80]}

    def summarise(system: str, done: list[dict]) -> dict:
        ruled_out = [d for d in done if d["kb"] and d["kind"] != "not_listed"]
        not_listed = [d for d in done if d["kind"] == "not_listed"]
        allowed = [d for d in done if not d["kb"]]
        return {
            "ruled_out_n": len(ruled_out),
            "states_the_no": sum(d["states_no"] for d in ruled_out) / len(ruled_out),
            "opens_with_yes": sum(d["opens_yes"] for d in ruled_out) / len(ruled_out),
            "asked_to_rephrase": sum(d["action"] == "clarify" for d in ruled_out) / len(ruled_out),
            "not_listed_n": len(not_listed),
            "not_listed_shows_list": sum(d["states_no"] for d in not_listed) / len(not_listed),
            "not_listed_opens_yes": sum(d["opens_yes"] for d in not_listed) / len(not_listed),
            "allowed_n": len(allowed),
            "allowed_answered_no": sum(d["opens_no"] for d in allowed) / len(allowed),
            "allowed_asked_to_rephrase": sum(d["action"] == "clarify" for d in allowed) / len(allowed),
        }

    run_question_set(__doc__, "limits", QUESTIONS, ["before", "now"], ask, summarise)


if __name__ == "__main__":
    main()
