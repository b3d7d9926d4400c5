"""Freshness, the headline benchmark: change policy facts in the KB, ask again.

Usage: python benchmarks/freshness.py [--limit N] [--max-new-tokens 200] [--workers 8] [--adapter ID]
       [--systems hybrid,rag_base,finetune_only]

Fifty policy questions over the sample company (benchmarks/freshness_questions.json), each tied to
the KB fact whose value answers it. Each question is asked before and after new revisions change
those facts, by three systems side by side:

* ``finetune_only``  the LoRA adapter alone; its slots are filled from the facts as they were when
                     it was trained (a fine-tune-only bot bakes facts in), no retrieval, no guardrail;
* ``rag_base``       the base model with retrieved passages and facts, slots filled from the KB,
                     no claim guardrail;
* ``hybrid``         the product: adapter + retrieval + guardrails (bot.conversation.responder).

Reported per system and phase: current-fact accuracy (the reply states the fact's value in force
now), stale share (after the change: the reply states the old value), and the share of replies
with an unbacked policy claim (an amount, duration, percentage, phone, e-mail or URL that no
in-force fact or retrieved passage supports). For the hybrid, also how much of that accuracy is the
model's own (the value in its words, not in a policy sentence the responder added or a fallback
quote), how often it asks for an order number or other details that no question here needs, and
how many sentences the guardrail dropped. Writes benchmarks/results/freshness.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import scratch_dir, table, write_json  # noqa: E402

from bot.conversation.guardrails import _CLAIM_PATTERNS, SLOT_RE, Grounder, slot_key  # noqa: E402
from bot.conversation.responder import Responder, passage_dict  # noqa: E402
from models.prompting import MAX_NEW_TOKENS  # noqa: E402

QUESTIONS = Path(__file__).resolve().parent / "freshness_questions.json"


# The figures a reply states, each read whole: an e-mail address, a phone number (digit groups with
# spaces), or an amount / number / range with its currency or percent sign. A value counts as stated
# only when one of them equals it, so "1" is not found in "+31 20 555 0199" and "2" not in "2-4 days".
_FIGURE_RE = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\+?\d{1,4}(?: \d{2,4}){2,4}(?!\d)"
    r"|[\u20ac$\u00a3]?\s?\d+(?:[.,]\d+)?(?:\s*(?:[-\u2013\u2014]|to)\s*\d+(?:[.,]\d+)?)?\s?%?",
    re.I,
)


def canonical(figure: str) -> str:
    """One spelling per figure: lower case, no spaces, ranges as "a-b", no currency sign."""
    f = re.sub(r"\s*(?:[\u2013\u2014]|\bto\b)\s*", "-", figure.strip().lower())
    return re.sub(r"\s+", "", f).lstrip("\u20ac$\u00a3").rstrip(".")


def states(reply: str, value: str) -> bool:
    """Whether ``reply`` states ``value`` as one of its own figures (written independently of the
    product's check, so that a fault in one is not hidden by the same fault in the other)."""
    want = canonical(value)
    if not want:
        return False
    if not re.search(r"\d", want):  # a value without digits: a whole-word match
        return re.search(rf"(?<!\w){re.escape(want)}(?!\w)", reply.lower()) is not None
    text = re.sub(r"(?m)^\s*\d+[.)]\s", "", reply)  # a list item's number is not a figure
    return any(canonical(m.group(0)) == want for m in _FIGURE_RE.finditer(text))


def unbacked_claims(reply: str, evidence: list[str]) -> list[str]:
    """Claims no evidence backs, checked line by line as the guardrail does (a phone number must not
    run on into the next list item's number)."""
    g = Grounder(lambda _s: None, evidence)
    found = []
    for line in reply.splitlines():
        for _kind, pattern in _CLAIM_PATTERNS:
            for m in pattern.finditer(line):
                if not g._is_backed(_kind, m.group(0)):
                    found.append(m.group(0))
    return found


def fill_slots(text: str, resolve) -> str:
    def sub(m):
        value = resolve(m.group(1))
        return value if value is not None else m.group(0)

    return SLOT_RE.sub(sub, text)


def change_facts(knowledge, items) -> dict[str, tuple[str, str]]:
    """Publish a new revision of each affected document with the new values; return old/new per fact."""
    facts = knowledge.facts()
    by_doc: dict[str, list] = {}
    for item in items:
        fact = facts[item["fact"]]
        by_doc.setdefault(fact.document_id, []).append((fact, item["new"]))
    changed = {}
    from knowledge.ingest import FactSpec, whole_value

    for doc_id, changes in by_doc.items():
        current = next(r for r in knowledge.in_force() if r.document_id == doc_id)
        body = current.content
        new_facts = []
        for f in current.facts:
            name = f["name"] if isinstance(f, dict) else f.name
            value = f["value"] if isinstance(f, dict) else f.value
            for fact, new in changes:
                if fact.name == name:
                    # the figure whole: "2" of a "2-day" fact, not every 2 of the page ("12", "LK-2...")
                    body = whole_value(str(value)).sub(new, body)
                    changed[name] = (str(value), new)
                    value = new
            get = (lambda k, f=f: f.get(k)) if isinstance(f, dict) else (lambda k, f=f: getattr(f, k))
            new_facts.append(
                FactSpec(name, value, get("unit"), get("description"), list(get("placeholders") or []))
            )
        knowledge.add_revision(
            doc_id,
            body,
            author="freshness benchmark",
            change_note="policy change",
            facts=new_facts,
            publish=True,
        )
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions (0 = all)")
    ap.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="the reply cap (default: the bot's)")
    ap.add_argument("--systems", default="hybrid,rag_base,finetune_only")
    ap.add_argument("--data-dir", type=Path,
                    help="an initialised data dir to use instead of a new temporary one. The run publishes the "
                         "changed policies into it: a second run on the same dir changes nothing and measures "
                         "no freshness (the questions' new values are already in force)")
    ap.add_argument("--workers", type=int, default=8, help="questions asked concurrently (batched decoding)")
    ap.add_argument("--adapter", default=None, help="an adapter id from the registry (default: the active one)")
    ap.add_argument("--rescore", type=Path, metavar="JSON",
                    help="no generation: score the replies stored in an earlier results file again")
    args = ap.parse_args()
    if args.rescore:
        rescore(args.rescore)
        return

    from bot.bootstrap import initialise
    from bot.services import Services
    from bot.settings import Settings

    data_dir = args.data_dir or scratch_dir("hybridesk-fresh-")
    settings = Settings(data_dir=data_dir, env="test", max_new_tokens=args.max_new_tokens)
    services = Services(settings)
    initialise(services, admin_email=None, train_nlu=False, out=lambda _s: None)  # NLU is not used here
    knowledge, generator = services.knowledge, services.generator
    adapter = args.adapter or services.active_adapter_id()
    print(f"adapter: {adapter}")
    items = json.loads(QUESTIONS.read_text())
    questions = [(item, q) for item in items for q in item["q"]]
    if args.limit:
        questions = questions[: args.limit]
    systems = args.systems.split(",")
    trained_facts = {n: f for n, f in knowledge.facts().items()}  # what a fine-tune-only bot baked in
    already = [i["fact"] for i in items if i["fact"] in trained_facts and str(trained_facts[i["fact"]].value) == i["new"]]
    if already:
        raise SystemExit(f"{len(already)} facts already have their new values ({already[0]}, ...): this data dir "
                         "has been through a freshness run, so the change would measure nothing; use a new one")

    def resolve_trained(slot: str):
        key = slot_key(slot)
        for f in trained_facts.values():
            if any(slot_key(p) == key for p in (f.placeholders or [])):
                return str(f.value)
        return None

    def ask(system: str, question: str) -> tuple[str, list[dict]]:
        if system == "hybrid":
            r = Responder(
                knowledge,
                generator,
                company_name=settings.company_name,
                max_new_tokens=args.max_new_tokens,
                adapter_id=adapter,
            )
            res = r.answer(text=question, intent="policy_question", tone="neutral", history=[])
            passages = [{"text": t} for t in _passage_texts(knowledge, question)]
            return res.text, passages, {"raw": res.raw_output, "verdict": res.verdict, "guardrail": res.guardrail}
        from models.prompting import build_messages

        if system == "rag_base":
            r = Responder(knowledge, generator, company_name=settings.company_name)
            passages, facts = r.retrieve(question, [])
            msgs = build_messages(
                message=question,
                intent="policy_question",
                tone="neutral",
                facts=facts,
                passages=passages,
                company_name=settings.company_name,
            )
            out = generator.generate(msgs, adapter_id=None, max_new_tokens=args.max_new_tokens).text
            resolve = r._slot_resolver(None)
            return fill_slots(out, resolve), passages, {"raw": out}
        msgs = build_messages(
            message=question, intent="policy_question", tone="neutral", company_name=settings.company_name
        )
        out = generator.generate(msgs, adapter_id=adapter, max_new_tokens=args.max_new_tokens).text
        return fill_slots(out, resolve_trained), [], {"raw": out}

    results = {}
    rows = []
    old_values: dict[str, str] = {}
    for phase in ("before", "after"):
        if phase == "after":
            changed = change_facts(knowledge, items)
            old_values = {k: v[0] for k, v in changed.items()}
        current = knowledge.facts()
        fact_values = [str(f.value) for f in current.values()]
        for system in systems:
            ok = stale = unbacked = own = asks = raw_asks = fallbacks = dropped = 0
            t0 = time.perf_counter()
            samples = []
            # the questions go in concurrently: the generator decodes them in one batch
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                answers = list(pool.map(lambda iq, system=system: ask(system, iq[1]), questions))
            for (item, q), (reply, passages, info) in zip(questions, answers, strict=True):
                value = str(current[item["fact"]].value)
                correct = states(reply, value)
                words = model_words(reply, info)
                own += states(words, value)
                asks += asks_for_details(words)
                raw_asks += asks_for_details(info.get("raw") or "")
                fallbacks += info.get("verdict") == "fallback"
                dropped += len((info.get("guardrail") or {}).get("dropped") or [])
                is_stale = (
                    phase == "after" and states(reply, old_values.get(item["fact"], "\0")) and not correct
                )
                claims = unbacked_claims(reply, fact_values + [p["text"] for p in passages])
                ok += correct
                stale += is_stale
                unbacked += bool(claims)
                samples.append(
                    {
                        "q": q,
                        "fact": item["fact"],
                        "value": value,
                        "reply": reply,
                        "correct": correct,
                        "stale": is_stale,
                        "unbacked": claims,
                        "model_stated": states(words, value),
                        "asks_for_details": asks_for_details(words),
                        **info,
                    }
                )
            n = len(questions)
            row = {
                "system": system,
                "phase": phase,
                "n": n,
                "current_fact_accuracy": ok / n,
                "stale_share": stale / n,
                "unbacked_claim_share": unbacked / n,
                # how much of the accuracy is the model's own: the value in the model's words, not in a
                # policy sentence the responder added or a fallback quote
                "model_stated_share": own / n,
                # a general policy question answered with a request for an order number or details
                "asks_for_details_share": asks / n,
                "model_asks_for_details_share": raw_asks / n,  # in the model's output, before the guardrail
                "fallback_share": fallbacks / n,
                "dropped_sentences_per_reply": dropped / n,
                "s_per_question": (time.perf_counter() - t0) / n,
            }
            rows.append(row)
            results[f"{system}/{phase}"] = {"summary": row, "samples": samples}
            print(table([row]), flush=True)
    print()
    print(table(rows))
    write_json("freshness", {"adapter": adapter, "max_new_tokens": args.max_new_tokens, "rows": rows, "details": results})


def rescore(path: Path) -> None:
    """Score stored replies with this version's checks; the file gets the new figures (old ones kept)."""
    data = json.loads(path.read_text())
    rows = []
    for key, result in data["details"].items():
        system, phase = key.split("/")
        before = data["details"].get(f"{system}/before", {}).get("samples", [])
        row = dict(result["summary"])
        old = {k: row[k] for k in ("current_fact_accuracy", "stale_share", "model_stated_share") if k in row}
        ok = stale = own = 0
        for i, sample in enumerate(result["samples"]):
            correct = states(sample["reply"], sample["value"])
            old_value = before[i]["value"] if phase == "after" and i < len(before) else "\0"
            sample["stale"] = phase == "after" and states(sample["reply"], old_value) and not correct
            sample["correct"] = correct
            sample["model_stated"] = states(model_words(sample["reply"], sample), sample["value"])
            ok += correct
            stale += sample["stale"]
            own += sample["model_stated"]
        n = len(result["samples"])
        row.update(current_fact_accuracy=ok / n, stale_share=stale / n)
        if "model_stated_share" in row:
            row["model_stated_share"] = own / n
        row["before_rescoring"] = row.get("before_rescoring") or old  # a second re-scoring keeps the first
        result["summary"] = row
        rows.append(row)
    data["rows"] = rows
    data["rescored"] = "figures read whole (benchmarks/freshness.py states)"
    path.write_text(json.dumps(data, indent=2, default=str))
    print(table([{k: v for k, v in r.items() if k != "before_rescoring"} | {
        "accuracy_before_rescoring": r["before_rescoring"].get("current_fact_accuracy")} for r in rows]))


_ASKS_RE = re.compile(
    r"\b(?:provide|share|give|send|tell)\b[^.?!]{0,60}?\b(?:order (?:number|id|details)|account (?:number|details)|"
    r"relevant details|contact details|your name|e-?mail address|shipping address)\b", re.I)


def asks_for_details(text: str) -> bool:
    """Whether a reply asks the customer for an order number or other details (none of the questions needs them)."""
    return bool(_ASKS_RE.search(text))


def model_words(reply: str, info: dict) -> str:
    """The part of a hybrid reply the model wrote: without an added policy sentence or a fallback quote."""
    if info.get("verdict") == "fallback":
        return ""
    report = info.get("guardrail") or {}
    for key in ("added_fact_statement", "added_policy_sentence"):
        if report.get(key):
            reply = reply.replace(report[key], "")
    return reply


def _passage_texts(knowledge, question: str) -> list[str]:
    return [passage_dict(p)["text"] for p in knowledge.retrieve(question, k=3)]


if __name__ == "__main__":
    main()
