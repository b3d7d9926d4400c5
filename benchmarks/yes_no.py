"""Yes/no questions about the shop that no rule or list of the KB answers (session 20).

The small model says yes to whatever it is asked ("Do you assemble furniture?" -> "Absolutely! We offer
a range of services to assist you in assembling furniture"). `yes_no_questions.json` holds 30 questions
written for the sample company: 16 whose answer is in a KB sentence (``kb``: words of that sentence)
and 14 the KB says nothing about (``kb`` empty). Each is sent as the first message of a chat, through
the product's NLU gate and answer step (`limits.product_reply`), to three systems:

* ``limits_off``: what the policy rules out, its lists and the yes/no answers all off;
* ``no_yes_no``: session 19's product (rules and lists read; a yes/no question no rule or list answers
  is left to the model, `Responder(yes_no=False)`);
* ``now``: the product.

Measured: of the answered ones, the share stating the KB's words, and the share opening with a yes
("Certainly!", "Absolutely!", "Yes", "Of course", "We do"); of the silent ones, the share opening
with a yes and the share saying the help pages give no clear answer. Asked-to-rephrase shares are
reported for both. Every reply is written to ``results/yes_no.json`` for reading by hand. Usage::

    python benchmarks/yes_no.py [--data-dir DIR]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from limits import norm, product_reply, run_question_set  # noqa: E402

QUESTIONS = Path(__file__).resolve().parent / "yes_no_questions.json"
# the model's yes, or its "We do offer ..." (not the KB list's "Yes. Our help pages say ...")
YES = re.compile(r"^\s*(?:I'm sorry[^.!?]*[.!?]\s*)?(?:certainly|of course|absolutely|sure|definitely|great news|"
                 r"yes(?!\. Our help pages say)|we do\b|we (?:do )?offer\b|you can\b)", re.I)
SYSTEMS = {"limits_off": {"limits": False}, "no_yes_no": {"yes_no": False}, "now": {}}


def main() -> None:
    from bot.conversation.responder import UNCONFIRMED_TEXT

    def ask(services, system: str, item: dict) -> dict:
        decision, text = product_reply(services, item["q"], **SYSTEMS[system])
        return {"q": item["q"], "kb": item["kb"], "action": decision.action, "reply": text,
                "states_kb": bool(item["kb"]) and norm(item["kb"]) in norm(text),
                "opens_yes": bool(YES.match(text)), "unconfirmed": UNCONFIRMED_TEXT in text}

    def summarise(system: str, done: list[dict]) -> dict:
        answered = [d for d in done if d["kb"]]
        silent = [d for d in done if not d["kb"]]
        return {
            "kb_n": len(answered),
            "kb_states_it": sum(d["states_kb"] for d in answered) / len(answered),
            "kb_opens_yes": sum(d["opens_yes"] for d in answered) / len(answered),
            "kb_rephrase": sum(d["action"] == "clarify" for d in answered) / len(answered),
            "silent_n": len(silent),
            "silent_opens_yes": sum(d["opens_yes"] for d in silent) / len(silent),
            "silent_says_unsure": sum(d["unconfirmed"] for d in silent) / len(silent),
            "silent_rephrase": sum(d["action"] == "clarify" for d in silent) / len(silent),
        }

    run_question_set(__doc__, "yes_no", QUESTIONS, list(SYSTEMS), ask, summarise)


if __name__ == "__main__":
    main()
