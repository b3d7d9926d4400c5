"""Answer from policy: retrieve current facts, prompt the tuned model, ground the reply.

This is the hybrid in one place. Retrieval supplies what is true now; the LoRA-tuned model
supplies the company's voice and writes facts as ``{{Slot}}`` placeholders; the guardrail
fills them from the KB and drops anything it cannot back.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.conversation.guardrails import STEP_DROPPED, Grounder, grounded_quote, only_courtesy
from bot.conversation.limits import (
    Limit,
    asked_for_list,
    asked_kind,
    asked_limit,
    asked_listed,
    asked_outside,
    asked_thing,
    follow_up_question,
    in_knowledge_base,
    is_yes_no,
    problem_search,
    reported_problem,
    same_words,
    stating_sentence,
    titled_after,
)
from bot.conversation.limits import limits as policy_limits
from bot.conversation.words import EU_MEMBERS, self_caused_damage
from bot.conversation.words import stem as _stem
from bot.conversation.words import stems as _stems
from bot.conversation.words import terms as _terms
from models.prompting import MAX_NEW_TOKENS

log = logging.getLogger(__name__)


def _hit_cap(stream: Any) -> bool:
    """Whether a finished generation stream was stopped by the reply length cap."""
    result = getattr(stream, "result", None)
    return result is not None and getattr(result, "finish_reason", None) == "length"

ALWAYS_FACTS = ("support_phone", "support_email", "support_hours", "live_chat", "website_name", "website_url")
ANGRY_ACK = "I'm sorry this has been frustrating — let's get it sorted."
# a how-to question the knowledge base documents no procedure for: the model's steps were dropped
NO_PROCEDURE_NOTE = (
    "Our help pages don't give step-by-step instructions for that, so I won't guess them. "
    "If you need more help, just ask for a person from our support team."
)
#: a yes/no question no sentence of the retrieved policies speaks to ("Do you offer student discounts?")
UNCONFIRMED_TEXT = (
    "I can't find a clear answer to that in our help pages, so I won't promise it. "
    "If you'd like someone to check, just ask for a person from our support team."
)
UNSURE_REPLY = (
    "I'm not sure our help pages cover that, and I'd rather not guess. "
    "Could you tell me a bit more, or shall I connect you with a person from our support team?"
)


FACTUAL_RE = re.compile(
    r"\b(?:how (?:long|much|many|soon|quickly|fast|late|early|far|old)|what(?:'?s)?\b[^?.!]{0,40}?\b(?:prices?|costs?|fees?|"
    r"number|e-?mail|address|hours|window|period|deadline|limit|threshold|value|amount|time|minimum|maximum)|"
    r"when|which|within|until|is there|do you charge|phone|e-?mail|costs?|prices?|fees?|spend|minimum|maximum|"
    r"at least|cut[- ]?off|\d+\s*(?:business\s+|working\s+)?(?:days?|weeks?|months?|years?|hours?))\b", re.I)
#: a question about how to do something, not only about a figure ("How can I pay later?")
HOW_TO_RE = re.compile(
    r"\bhow (?:do|can|could|should|would) (?:i|we|you)\b|\bhow to\b|\bwhere (?:do|can|should) i\b|"
    r"\bwhat (?:do|should) i (?:do|need to do)\b|\bsteps?\b|\bprocedure\b|\bthe process\b|\bprocess for\b", re.I)
#: a numbered step in a KB passage ("2. Press **Start a return**.")
_KB_STEP = re.compile(r"^\s*\d{1,2}[.)]\s+(.+?)\s*$")
MAX_PROCEDURE_STEPS = 8
def supporting_sentence(question: str, passages: list[dict[str, Any]], facts: list[dict[str, Any]],
                        reply: str) -> str | None:
    """The passage sentence that states the fact a factual question asks for, if the reply lacks it.

    Only sentences of retrieved (in-force) passages that contain a current fact value qualify, so
    what is added is always the knowledge base's own, current wording.
    """
    if not FACTUAL_RE.search(question) or not passages:
        return None
    top_docs = [p.get("document_id") for p in passages[:2]]
    values = [str(f["value"]) for f in facts if f.get("document_id") in top_docs and str(f["value"]).strip()]
    if any(states_value(reply, v) for v in values):
        return None
    q_terms = _terms(question)
    best, best_score = None, 0.0
    for rank, p in enumerate(passages[:3]):
        for sentence in _policy_sentences(p):
            if len(sentence) < 15 or not any(states_value(sentence, v) for v in values):
                continue
            # "Price: €39 per order" means something under its heading only ("Large items")
            if _SHORT_LABEL_RE.match(sentence) and p.get("heading"):
                sentence = f"{str(p['heading']).strip()}, {sentence[:1].lower()}{sentence[1:]}"
            overlap = len(q_terms & _terms(sentence))
            score = overlap + 0.5 - 0.3 * rank
            if score > best_score:
                best, best_score = sentence, score
    return best


def _policy_sentences(passage: dict[str, Any]) -> Iterator[str]:
    """The sentences of a passage that read well on their own, without Markdown emphasis: not a table
    row ("| Standard | €5.25 |"), nor a list item continuing a lead-in ("...when all of these are true:"
    / "you find it within 14 days")."""
    body = re.sub(r"^#+\s.*$", "", str(passage.get("text", "")), flags=re.M)
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", body):
        sentence = sentence.replace("**", "").strip(" -*•\t")
        if sentence and not sentence.startswith("|") and not sentence[:1].islower():
            yield sentence


# a fact value that is a contact detail: an e-mail address, a web address, a phone number
_CONTACT_VALUE = re.compile(r"@|://|\d[\d ()./-]{5,}\d")


#: the words of a fact's name that say what kind of figure it is, not what it is about
_FACT_KIND_WORDS = {_stem(w) for w in ("price", "prices", "days", "day", "fee", "fees", "hours", "time", "cost",
                                        "amount", "percent", "number", "value", "limit", "window", "weeks", "months",
                                        "years")}
#: below this cosine between a question and a fact, the question is not taken to ask for that fact
ASKED_FACT_MIN = 0.5
#: facts within this of the best match are stated too (at most two): "free delivery from?" -> both thresholds
ASKED_FACT_TIE = 0.04
#: a fact the question names ("warranty" of ``warranty_months``) is taken alone if it scores within this of
#: the best match: "How long is the warranty?" reads closest to "Time within which we review a warranty
#: claim" (``claim_review_time``), by its "how long"
ASKED_FACT_NAMED = 0.1
#: a fact whose name the question uses in full ("What is your returns window?": return window) is asked for
#: down to this cosine, below :data:`ASKED_FACT_MIN` (MiniLM read that question at 0.47 to ``return_window_days``)
ASKED_FACT_NAMED_MIN = 0.4
#: a fact defined by one of the retrieved documents is the likelier one
RETRIEVED_BONUS = 0.05


def asks_kb_fact(text: str, passages: list[dict[str, Any]], knowledge: Any, at: datetime | None = None) -> bool:
    """Whether ``text`` is a factual question ("What is your return window?") asking for a fact of one
    of the retrieved ``passages``' documents: its embedding matches the fact at least
    :data:`ASKED_FACT_MIN`, the bar the responder states a fact at. The intent model, trained on the
    tickets, called such questions out of scope. Of BANKING77's test questions 0.6% pass this (18 of
    3,080; "What is the minimum age?"), and no TweetEval tweet (``benchmarks/kb_scope.py``)."""
    match = getattr(knowledge, "match_facts", None)
    if match is None or not FACTUAL_RE.search(text) or not passages:
        return False
    docs = {p.get("document_id") for p in passages}
    asked = _stems(same_words(text))
    return any(f.document_id in docs and (score >= ASKED_FACT_MIN
                                          or score >= ASKED_FACT_NAMED_MIN and names_fact(asked, text, f))
               for f, score in match(text, at=at, k=4))


#: words that mark a fact as the option a customer gets when they choose none ("standard delivery")
_UNMARKED = {_stem(w) for w in ("standard", "regular", "normal", "default", "basic")}
#: words that only say how a figure is asked for ("How much is ...", "... take?")
_ASKING_WORDS = {_stem(w) for w in ("long", "much", "many", "soon", "fast", "quickly", "take", "usually",
                                    "normally", "typically", "generally", "roughly", "need", "wait", "pay")}
_SHIPPING_RE = re.compile(r"\b(?:shipping|shipment|postage)\b", re.I)


def unmarked_option(question: str, facts: dict[str, Any]) -> Any | None:
    """The fact of the usual option when ``question`` asks for a figure of a kind of thing and names no
    option of it: "How much is shipping?" asks for standard delivery's price, not for express or
    large-item delivery's, which read closer to it by their descriptions ("Price of express delivery").
    Every content word of the question must be in the fact's name; the question must ask for the
    fact's kind of figure (a sum, a length of time). None unless exactly one fact fits."""
    asked = _stems(_SHIPPING_RE.sub("delivery", same_words(question))) - _FACT_KIND_WORDS - _ASKING_WORDS
    if not asked:
        return None
    found = []
    for fact in facts.values():
        words = _stems(fact.name.replace("_", " "))
        if words & _UNMARKED and asked <= words - _FACT_KIND_WORDS and not _other_kind(question, fact_value_text(fact)):
            found.append(fact)
    return found[0] if len(found) == 1 else None


# a policy priced "for other EU countries" names none of its member states
_EU_MEMBER_RE = re.compile(r"\b(?:" + "|".join(EU_MEMBERS) + r")\b", re.I)


def with_region(question: str, facts: dict[str, Any]) -> str:
    """``question`` with "(EU country)" after an EU member state that no fact names: "How much is delivery
    to Germany?" read closest to express delivery's price; "How much is delivery to Germany (EU country)?"
    reads closest to the price for other EU countries. A country a fact names (the Netherlands, whose
    standard delivery has its own price) is left as it is."""
    m = _EU_MEMBER_RE.search(question)
    if not m:
        return question
    named = " ".join(f"{f.name} {f.description or ''}" for f in facts.values()).lower()
    if m.group(0).lower() in named:
        return question
    return f"{question[:m.end()]} (EU country){question[m.end():]}"


def names_fact(asked_words: set[str], text: str, fact: Any) -> bool:
    """Whether a question (``text``, its stems ``asked_words``) names ``fact``: every word of its name
    but the kind word ("months", "price") is in it, and it does not ask for another kind of figure."""
    words = _stems(fact.name.replace("_", " ")) - _FACT_KIND_WORDS
    return bool(words) and words <= asked_words and not _other_kind(text, fact_value_text(fact))


def answered_by_kb(text: str, passages: list[dict[str, Any]], knowledge: Any, products: Collection[str] = (),
                   at: datetime | None = None) -> bool:
    """Whether the retrieved ``passages`` answer ``text`` though the intent model is unsure of it: a
    passage uses nearly all its words or a list of theirs answers it (:func:`limits.in_knowledge_base`),
    or it asks for a fact of theirs (:func:`asks_kb_fact`). The manager and the benchmarks call this.

    Damage the customer caused ("i dropped my mug and it broke, can i get a new one under warranty") is also
    answered by what a retrieved document rules out anywhere in it ("What is not covered: Damage from
    accidents"), as the responder reads it: retrieval finds the warranty's other sections first.
    """
    if in_knowledge_base(text, passages, products, embedding_similarity(knowledge)) or asks_kb_fact(
            text, passages, knowledge, at):
        return True
    if self_caused_damage(text) and passages:
        responder = Responder(knowledge, None, company_name="")
        return asked_limit(text, policy_limits(passages + responder._other_sections(passages))) is not None
    return False


_RANGE_RE = re.compile(r"(\d)\s*(?:[-–—]|to)\s*(?=\d)")


def _norm_value_text(text: str) -> str:
    """Lower case, ranges as ``a-b`` ("3 to 5", "3–5" -> "3-5"), digit groups joined ("+31 20" -> "+3120")."""
    text = _RANGE_RE.sub(r"\1-", str(text).lower())
    return re.sub(r"(?<=[\d€$£])\s+(?=\d)|\s+(?=%)", "", text)


def states_value(text: str, value: str) -> bool:
    """Whether ``text`` states ``value`` as a figure of its own ("3-5" matches "3–5 days", "€60" matches
    "60 euros"), never as part of another one: "1" is not in "0199", "14" not in "+31 20 555 0142",
    "2" not in "2-4 days" and "€60" not in "€600"."""
    v = _norm_value_text(value)
    r = _norm_value_text(re.sub(r"(?m)^\s*\d+[.)]\s", "", str(text)))  # a list item's number is no figure
    if not v:
        return True
    for form in dict.fromkeys((v, v.lstrip("€$£"))):
        if form and re.search(rf"(?<![\d.,])(?<!\d-){re.escape(form)}(?![\d]|[.,]\d|-\d)", r):
            return True
    return False


# what a question's wording asks for: a sum ("how much", "the fee"), a length of time ("how long"), a time
# of day ("how late", "the cut-off")
_ASKS_SUM = re.compile(r"\bhow much\b(?! time)|\b(?:cost|costs|price|prices|fee|fees|charge|charges)\b", re.I)
_ASKS_LENGTH = re.compile(r"\bhow long\b|\bhow many (?:days|weeks|months|years|hours)\b", re.I)
_ASKS_TIME = re.compile(r"\bhow (?:late|early)\b|\bwhat time\b|\bcut[- ]?off\b|\bdeadline\b|\buntil when\b", re.I)


def _other_kind(question: str, value: str) -> bool:
    """Whether ``question`` asks, by its wording, for another kind of figure than ``value`` is: "How late
    can I order for next-day delivery?" asks for a time of day, not next-day delivery's price."""
    money = bool(re.search(r"[€$£%]", value))
    if _ASKS_SUM.search(question):
        return not money
    return bool(_ASKS_TIME.search(question) or _ASKS_LENGTH.search(question)) and money


def _is_charge(value: str) -> bool:
    """Whether a fact's value is an amount of money or a percentage above zero ("€9.00", "12%")."""
    return bool(re.search(r"[€$£%]", value)) and any(float(n) > 0 for n in re.findall(r"\d+(?:\.\d+)?", value))


def fact_value_text(fact: Any) -> str:
    value, unit = str(fact.value), getattr(fact, "unit", None)
    if not unit or str(unit) in value:
        return value
    if value.strip() in ("1", "one") and str(unit).endswith("s"):
        unit = str(unit)[:-1]  # "1 business day", not "1 business days"
    return f"{value} {unit}"


def fact_dict(fact: Any) -> dict[str, Any]:
    """A fact in force as the prompt takes it; ``value_text`` (with its unit) is for the guardrail only."""
    return {"name": fact.name, "value": fact.value, "placeholders": list(fact.placeholders or []),
            "document_id": fact.document_id, "value_text": fact_value_text(fact)}


#: a sentence that is a list item's short label and its value ("Price: €39 per order, ...")
_SHORT_LABEL_RE = re.compile(r"^[A-Z][\w-]*(?: [\w-]+)?:\s+(.+)$", re.S)


def fact_statement(question: str, passages: list[dict[str, Any]], fact: Any) -> str:
    """One sentence stating ``fact``'s current value: the policy's own sentence when it has one."""
    q_terms = _terms(question)
    best, best_score = None, -1
    for p in passages:
        if p.get("document_id") != fact.document_id:
            continue
        for sentence in _policy_sentences(p):
            labelled = _SHORT_LABEL_RE.match(sentence)
            if labelled and not states_value(re.split(r"[,;(]", labelled.group(1))[0], fact.value):
                continue  # "Price: €14.50 per order, free from €150" labels another figure than this fact's
            if len(sentence) >= 15 and states_value(sentence, fact.value):
                # the most words of the question; of equals, the shorter sentence (less beside the point)
                score = len(q_terms & _terms(sentence)) - len(sentence) / 10_000
                if score > best_score:
                    best, best_score = sentence, score
    if best:
        best = best if best[-1] in ".!?" else best + "."
        labelled = _SHORT_LABEL_RE.match(best)
        if labelled and fact.description:
            # "Price: €39 per order" means something under its heading only: name what the price is of
            best = f"{fact.description.strip().rstrip('.')}: {labelled.group(1)}"
        return best
    label = (fact.description or fact.name.replace("_", " ")).strip().rstrip(".")
    return f"{label[:1].upper()}{label[1:]}: {fact_value_text(fact)}."


# words a question can use for almost any procedure ("How do I get an invoice?"): a procedure need
# not repeat them; a shop's "sell" asks whether the thing exists ("Do you sell furniture made to order?")
_GENERIC_VERBS = {"get", "make", "find", "see", "go", "have", "need", "want", "way", "where", "step", "steps",
                  "file", "process", "procedure", "please", "possible", "able", "leave", "post", "sell"}


def procedure(question: str, passages: list[dict[str, Any]], *, every_term: bool = False,
              products: Collection[str] = (), context: list[dict[str, Any]] = ()
              ) -> tuple[dict[str, Any], list[str]] | None:
    """The retrieved passage whose numbered steps best match ``question``, and those steps; or None.

    Procedures are facts too: "How do I start a return?" is answered with the steps the knowledge base
    documents, not with steps the model makes up. Of the passages with a numbered list of at least two
    steps, the one sharing most words with the question wins; of equals, the better-ranked one. It
    must share at least half of the question's words (its heading, title and steps together): a list
    about something else ("Follow your refund" for "How do I wrap it as a present?") is no answer.
    With ``every_term`` (sections the retriever did not return; ``context``: the passages it did), every
    word of the question but a generic verb that its document uses must appear: "How do I use a gift card?"
    is not answered by "Buying a gift card".
    A word of the shop's product names (``products``: "rug") counts as shared by steps about items: "I
    want to return a rug, how do I do that?" is answered by "Register your return".
    """
    q_terms = _stems(question)
    q_terms = q_terms - {_stem(w) for w in _GENERIC_VERBS} or q_terms
    # half of the question's words, and two at least: one shared word ("gift" in "How do I wrap a
    # gift?" and "Buying a gift card") is a coincidence, not the procedure asked for
    needed = len(q_terms) if every_term else max(math.ceil(0.5 * len(q_terms)), min(2, len(q_terms)))
    # with ``every_term``, the words of the question that its document uses somewhere: "I put the wrong address
    # on my order, how can I change it?" is answered by "While the order is Placed: change it yourself", though
    # no page of the document says "put" or "wrong" (the customer's account of what happened, not what is asked)
    used: dict[Any, set[str]] = {}
    if every_term:
        for p in [*passages, *context]:
            used.setdefault(p.get("document_id"), set()).update(
                _stems(" ".join([str(p.get("heading") or ""), str(p.get("title") or ""), str(p.get("text", ""))])))
    best: tuple[int, int, dict[str, Any], list[str]] | None = None
    for rank, p in enumerate(passages):
        # (a product the shop sells counts as used: steps about items are about it)
        asked = q_terms & (used[p.get("document_id")] | set(products)) if every_term else q_terms
        if every_term and len(asked) < max(math.ceil(0.5 * len(q_terms)), min(2, len(q_terms))):
            continue  # the document shares too few of the question's words to answer it
        steps: list[str] = []
        for line in str(p.get("text", "")).splitlines():
            m = _KB_STEP.match(line)
            if m and not steps and m.group(1)[:1].islower():
                break  # "1. open the carrier's page ...; or 2. refuse the parcel": options that finish a
                # sentence ("You can:"), not a procedure
            if m:
                steps.append(m.group(1).replace("**", ""))
            elif steps and line.strip():
                break  # the first list has ended
        if len(steps) < 2:
            continue
        p_terms = _stems(" ".join([str(p.get("heading") or ""), str(p.get("title") or ""), *steps]))
        score = len(q_terms & p_terms) + (len((q_terms - p_terms) & set(products)) if "item" in p_terms else 0)
        if every_term and (asked - p_terms) - (set(products) if "item" in p_terms else set()):
            continue
        if (every_term or score >= needed) and (best is None or score > best[0]):
            best = (score, rank, p, steps[:MAX_PROCEDURE_STEPS])
    return (best[2], best[3]) if best else None


def _names_asked(question: str, section: dict[str, Any], *fields: str) -> bool:
    """Whether ``section``'s ``fields`` (its heading, its title) name a word of ``question`` (generic verbs aside)."""
    asked = _stems(question) - {_stem(w) for w in _GENERIC_VERBS}
    return bool(asked & _stems(" ".join(str(section.get(f) or "") for f in fields)))


def prose_answer(question: str, passages: list[dict[str, Any]], *,
                 named_share: float = 0.0) -> tuple[dict[str, Any], str] | None:
    """For a how-to question the KB answers in prose, not in numbered steps: the section and its words.

    "How do I use a gift card?" is answered by the "Using a gift card" section's text ("On the
    payment step of checkout, press ..."). The section's heading must name part of the question, and
    its heading, title and text together every content word of it (generic verbs aside): a section
    that merely mentions the words ("What you can change: ... gift wrapping") answers nothing.
    Of several, the heading naming most of the question wins; of equals, the better-ranked one.
    """
    q_terms = _stems(question)
    # "pay" too: "How do I pay with Klarna?" is not answered by a "Paying by invoice" section
    q_terms = q_terms - {_stem(w) for w in (*_GENERIC_VERBS, "pay")} or q_terms
    best: tuple[int, dict[str, Any], str] | None = None
    for p in passages:
        heading = str(p.get("heading") or "")
        named = q_terms & _stems(heading)
        if not named or len(named) < named_share * len(q_terms) or (best is not None and len(named) <= best[0]):
            continue
        text = _plain_text(str(p.get("text", "")))
        if text and q_terms <= _stems(f"{heading} {p.get('title') or ''} {text}"):
            best = (len(named), p, text)
    if best is None:
        return None
    sentences = re.split(r"(?<=[.!?])\s+", best[2])
    return best[1], " ".join(sentences[:2])


#: revisions whose sections are kept per knowledge base (a revision's text never changes)
SECTION_CACHE_SIZE = 256
_SECTIONS_LOCK = threading.Lock()
_SECTIONS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, Any], list[dict[str, Any]]]] = weakref.WeakKeyDictionary()


def _plain_text(markdown: str) -> str:
    """A section's text as one paragraph: headings and emphasis removed, list items joined."""
    lines = [re.sub(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+", "", line).replace("**", "").strip()
             for line in markdown.splitlines() if not re.match(r"\s*#", line)]
    return " ".join(line for line in lines if line and "|" not in line)


# what makes an item dangerous to keep using: a message that says it is answered by what the KB says to do
# about it before anything else (QA: "the lamp started sparking and smells like burning!!" got the model's
# request for "the specific details of the lamp", the KB's "Safety first" only as a fallback at the end)
_HAZARD_RE = re.compile(r"(?i)\b(?:spark\w*|smok\w*|burn(?:ing|t|ed|s)?|overheat\w*|fire|flames?|melt\w*|fumes?|"
                        r"(?:electric(?:al)?\s+)?shocks?|shocked)\b")


def hazard_answer(text: str, sections: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """The KB's sentence about a danger ``text`` reports (sparks, smoke, burning, overheating), and its section.

    The sentence must name the same danger; of several, the one naming most of the message's dangers and
    then most of its other words wins."""
    dangers = {_stem(m.group(0).lower().split()[-1]) for m in _HAZARD_RE.finditer(text)}
    if not dangers:
        return None
    words = _stems(text)
    best: tuple[tuple[int, int], dict[str, Any], str] | None = None
    for section in sections:
        for sentence in re.split(r"(?<=[.!?])\s+", _plain_text(str(section.get("text") or ""))):
            said = {_stem(m.group(0).lower().split()[-1]) for m in _HAZARD_RE.finditer(sentence)}
            score = (len(dangers & said), len(words & _stems(sentence)))
            if score[0] and (best is None or score > best[0]):
                best = (score, section, sentence)
    return (best[1], best[2]) if best else None


def prose_statement(passage: dict[str, Any], text: str) -> str:
    where = passage.get("heading") or passage.get("title") or "our help pages"
    return f"Our help pages say ({where}): {text}"


def limit_statement(question: str, limit: Limit) -> str:
    """The answer to a question about something the policy rules out: no, in the policy's words."""
    opener = "I'm afraid that isn't possible. " if re.match(r"\s*(?:how|where|what)\b", question, re.I) else (
        "I'm afraid not. ")
    # what to do instead, when the KB says it right after ("Return the item and order the one you want")
    said = f"{limit.sentence} {limit.then}" if limit.then else limit.sentence
    # (a list the asked thing may belong to, "every country of the European Union": no "no")
    return f"{opener if limit.says_no else ''}{prose_statement(limit.passage, said)}"


def procedure_statement(passage: dict[str, Any], steps: list[str]) -> str:
    where = passage.get("heading") or passage.get("title") or "our help pages"
    return f"Here is how ({where}):\n" + "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))


# An opening sentence that is really the reply's sign-off ("If you have any further questions,
# don't hesitate to reach out."): the answer goes before it, not after.
_SIGN_OFF_RE = re.compile(
    r"\b(?:don'?t hesitate|do not hesitate|feel free to (?:ask|contact|reach|get in touch)|"
    r"(?:any|have) (?:other |more |further |additional )?questions|further (?:assistance|help)|"
    r"let (?:me|us) know if)\b", re.I)


def _answer_first(pieces: Iterator[str], lead: str, stated: Callable[[str], bool],
                  grounder: Grounder, first: bool = False) -> Iterator[str]:
    """The checked reply with ``lead`` (the asked fact's current value, or the KB's procedure) after
    its opening sentence.

    A customer who asks "How long is the warranty?" reads the answer second, not after a list and a
    closing paragraph. It goes before the opening sentence when that one already introduces a list
    ("Here's what you can do:") or is a sign-off ("If you have any questions, don't hesitate to
    reach out."), and it is left out when ``stated(opening sentence)`` says that sentence already
    gives the answer. With ``first`` (a "no": "I'm afraid not. ..."), it opens the reply.
    """
    # the model often ends lines with "\r\n", and a stray "\r" reached customers ("...order.\n\r\nIf you")
    pieces = (piece.replace("\r\n", "\n").replace("\r", "") for piece in pieces)
    if not lead:
        yield from pieces
        return
    grounder.mark_said(lead)
    if first:
        yield lead
        started = False
        for piece in pieces:
            piece = piece.replace("\r\n", "\n")
            if not started:
                if not piece.strip():
                    continue
                started = True
                piece = "\n" + piece.lstrip()
            yield piece
        return
    placed = after_lead = False
    trailing = 0  # line breaks at the end of what was shown after the answer
    for piece in pieces:
        piece = piece.replace("\r\n", "\n")  # the model often ends lines with "\r\n"
        if after_lead and piece.strip():
            after_lead = False
            if not piece.startswith("\n"):  # what followed the opening sentence on its line starts a new one
                piece = "\n" + piece.lstrip(" ")
        if placed:
            # the steps dropped after the answer leave one blank line at most, as elsewhere in the guardrail
            body = piece.lstrip("\n")
            breaks = min(len(piece) - len(body), max(0, 2 - trailing))
            piece = "\n" * breaks + body
            trailing = trailing + breaks if not body else len(body) - len(body.rstrip("\n"))
            if piece:
                yield piece
            continue
        if not piece.strip():
            yield piece
            continue
        placed = True
        if stated(piece):
            yield piece
        elif (piece.rstrip().endswith(":") or re.match(r"\s*(?:[-*•]|\d{1,2}[.)])\s", piece)
              # (the guardrail holds a line ending in ":" and sends it with the first item of its list)
              or re.match(r"[^\n]*:[ \t]*\r?\n\s*(?:[-*•]|\d{1,2}[.)])\s", piece.lstrip())
              or _SIGN_OFF_RE.search(piece)):
            yield lead + "\n" + piece.lstrip(" ")
        else:
            yield piece.rstrip(" ") + "\n" + lead
            after_lead = True
            trailing = 0
    if not placed:
        yield lead


def passage_dict(p: Any) -> dict[str, Any]:
    if isinstance(p, dict):
        return p
    return {
        "text": p.text,
        "title": getattr(p, "title", None),
        "heading": getattr(p, "heading", None),
        "anchor": getattr(p, "anchor", None),
        "document_id": getattr(p, "document_id", None),
        "revision": getattr(p, "revision", None),
        "score": float(getattr(p, "score", 0.0) or 0.0),
    }


def citation(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p.get(k) for k in ("document_id", "revision", "title", "heading", "anchor")}


@dataclass
class AnswerResult:
    text: str
    citations: list[dict[str, Any]]
    verdict: str
    guardrail: dict[str, Any]
    model_id: str | None = None
    adapter_id: str | None = None
    prompt: list[dict[str, str]] | None = None
    raw_output: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    generation_ms: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def embedding_similarity(knowledge: Any) -> Callable[[str, list[str]], list[float]] | None:
    """How alike one phrase is to each of others (cosine of the retriever's embeddings), or None for a
    knowledge base without an embedder."""
    if not hasattr(knowledge, "retriever"):
        return None
    try:
        embedder = knowledge.retriever.embedder
    except Exception:  # a knowledge base that cannot be opened: no list is read
        log.warning("no embedder for the listed things", exc_info=True)
        return None

    def similarity(phrase: str, others: list[str]) -> list[float]:
        vectors = embedder.texts([phrase, *others])  # normalised
        return [float(vectors[0] @ v) for v in vectors[1:]]

    return similarity


class Responder:
    """Builds and streams one grounded answer. Synchronous; run it in a worker thread."""

    def __init__(self, knowledge: Any, generator: Any, *, company_name: str, max_new_tokens: int = MAX_NEW_TOKENS,
                 adapter_id: str | None = None, timeout_s: float | None = None, procedures: bool = True,
                 limits: bool = True, products: Collection[str] = (), yes_no: bool = True) -> None:
        #: False: no KB procedure is looked up and the model's own steps (checked for screens) stay, except
        #: on a fact question; the procedure benchmark's baseline
        self.procedures = procedures
        #: False: what the policy rules out is not read (the limits benchmark's baseline)
        self.limits = limits
        #: False: a yes/no question no rule or list answers is left to the model (session 19's behaviour;
        #: ``benchmarks/yes_no.py``'s baseline)
        self.yes_no = yes_no and limits
        #: the words of the shop's product names (see :func:`procedure`)
        self.products = frozenset(products)
        # shared by every responder over this knowledge base (one is built per reply)
        try:
            with _SECTIONS_LOCK:
                self._section_cache = _SECTIONS.setdefault(knowledge, {})
        except TypeError:  # a knowledge object that cannot be weakly referenced: a cache of its own
            self._section_cache = {}
        self.timeout_s = timeout_s
        self.knowledge = knowledge
        self.generator = generator
        self.company_name = company_name
        self.max_new_tokens = max_new_tokens
        self.adapter_id = adapter_id
        self._stale: dict[str, str] = {}  # old value of a contact fact -> the one in force (see _current)

    def _title(self, document_id: str, revision: int) -> str | None:
        """A cited document's title (a fact's document that retrieval did not return)."""
        try:
            return self.knowledge.get(document_id, revision).title
        except Exception:  # a citation without its title still names the document
            log.warning("no title for %s r%s", document_id, revision, exc_info=True)
            return None

    def _sections(self, doc_id: Any, rev: Any) -> list[dict[str, Any]]:
        """Every section of one document revision, whole (a retrieved passage can be part of one)."""
        from knowledge.chunking import chunk_markdown

        if doc_id is None or rev is None:
            return []
        cache = self._section_cache
        sections = cache.get((doc_id, rev))
        if sections is None:  # a revision never changes: read and split it once per process
            try:
                info = self.knowledge.get(doc_id, rev)
            except Exception:  # a document retired a moment ago: nothing more to read
                log.warning("could not read %s r%s for its procedures", doc_id, rev, exc_info=True)
                return []
            # a long section is indexed as several chunks under one anchor ("Report it quickly": its paragraph,
            # then its numbered steps); here it is one section again, whole
            whole: dict[str, dict[str, Any]] = {}
            for chunk in chunk_markdown(info.content, info.title):
                if (section := whole.get(chunk.anchor)) is not None:
                    section["text"] += "\n\n" + chunk.body
                else:
                    whole[chunk.anchor] = {"text": chunk.body, "title": info.title,
                                           "heading": chunk.heading or info.title, "anchor": chunk.anchor,
                                           "document_id": doc_id, "revision": rev}
            sections = list(whole.values())
            with _SECTIONS_LOCK:  # replies are answered in several threads
                while len(cache) >= SECTION_CACHE_SIZE:
                    cache.pop(next(iter(cache)))  # the oldest revision read
                cache[doc_id, rev] = sections
        return self._current(sections)

    def _similarity(self) -> Callable[[str, list[str]], list[float]] | None:
        return embedding_similarity(self.knowledge)

    def _current(self, passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``passages`` with the old value of a contact fact replaced by the one in force: another policy
        still saying "Call +31 20 555 0142" after the support phone changed to "+31 20 555 0199" is not
        quoted, and does not back the old number, with it (the editor's page lists such sentences)."""
        if not self._stale:
            return passages
        out = []
        for p in passages:
            text = str(p.get("text", ""))
            for old, new in self._stale.items():
                text = re.sub(rf"(?<![\w@.+]){re.escape(old)}(?![\w@])", new, text)
            out.append(p if text == p.get("text") else {**p, "text": text})
        return out

    def _other_sections(self, passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The sections of the retrieved passages' documents (the revisions retrieved) not among them whole.

        A section the retriever returned only part of is one of them: "Report it quickly" was retrieved by its
        paragraph, and its numbered steps, in a chunk of their own, were never read (QA)."""
        retrieved = {(p.get("document_id"), p.get("revision"), p.get("anchor")): str(p.get("text") or "").strip()
                     for p in passages}
        out: list[dict[str, Any]] = []
        for doc_id, rev in dict.fromkeys((p.get("document_id"), p.get("revision")) for p in passages):
            for section in self._sections(doc_id, rev):
                if retrieved.get((doc_id, rev, section["anchor"])) != section["text"].strip():
                    out.append(section)
        return out

    def retrieve(self, text: str, history: list[tuple[str, str]], at: datetime | None = None,
                 k: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        at = at or datetime.now(UTC)
        recent = [t for role, t in history if role == "customer"][-2:]
        passages = [passage_dict(p) for p in
                    self.knowledge.retrieve(problem_search(text, self.products), at=at, history=recent, k=k)]
        superseded = getattr(self.knowledge, "superseded_values", None)
        self._stale = {old: new for old, new in (superseded(at) if superseded else {}).items()
                       if _CONTACT_VALUE.search(old)}
        passages = self._current(passages)
        facts_now = self.knowledge.facts(at=at)
        doc_ids = {p["document_id"] for p in passages}
        facts = []
        for name, fact in facts_now.items():
            if fact.document_id in doc_ids or name in ALWAYS_FACTS:
                facts.append(fact_dict(fact))
        return passages, facts

    def asked_facts(self, text: str, passages: list[dict[str, Any]], at: datetime) -> list[Any]:
        """The key facts a factual question asks for (best first, at most two), or none."""
        match = getattr(self.knowledge, "match_facts", None)
        if match is None or not FACTUAL_RE.search(text):
            return []
        docs = {p.get("document_id") for p in passages}
        # in the KB's words ("How long is your guarantee?" asks for the warranty)
        in_force = self.knowledge.facts(at=at)
        if (usual := unmarked_option(text, in_force)) is not None:
            return [usual]
        text = with_region(same_words(text), in_force)
        ranked = sorted(((f, score + (RETRIEVED_BONUS if f.document_id in docs else 0.0))
                         for f, score in match(text, at=at, k=4)), key=lambda fs: -fs[1])
        asked_words = _stems(text)

        def names(fact: Any) -> bool:
            return names_fact(asked_words, text, fact)

        if not ranked:
            return []
        if ranked[0][1] < ASKED_FACT_MIN:
            # read below the bar, but named in full: "What is your returns window?"
            named = [f for f, score in ranked if score >= ASKED_FACT_NAMED_MIN and names(f)]
            return named[:1]
        best = ranked[0][1]

        # the one fact the question names, among those close to the best: "How long is the warranty?" is
        # ``warranty_months``, not the claim review time
        named = [f for f, score in ranked if score >= best - ASKED_FACT_NAMED and names(f)]
        if len(named) == 1:
            return named
        tied = [f for f, score in ranked[:2] if score >= best - ASKED_FACT_TIE]
        # of two close ones, the fact the question names goes alone: "How much is standard delivery?"
        # names standard delivery's price, not large-item delivery's (its document was retrieved)
        named = [f for f in tied if names(f)]
        return named if len(named) == 1 else tied

    def answer(
        self,
        *,
        text: str,
        intent: str,
        tone: str,
        history: list[tuple[str, str]],
        on_piece: Callable[[str], None] | None = None,
        grounded_only: bool = False,
        customer_values: dict[str, str] | None = None,
        at: datetime | None = None,
    ) -> AnswerResult:
        at = at or datetime.now(UTC)
        emit = on_piece or (lambda _p: None)
        passages, facts = self.retrieve(text, history, at)
        # "and Bitcoin?" after "Which payment methods do you accept?" asks "Do you accept Bitcoin?"; "and
        # for made-to-order furniture?" after "What is the cancellation fee?" asks for that fee
        asking = follow_up_question(text, next((t for role, t in reversed(history) if role == "customer"), None),
                                    factual=lambda q: bool(FACTUAL_RE.search(q)))
        asked = self.asked_facts(asking, passages, at)
        known = {f["name"] for f in facts}
        for fact in asked:
            if fact.name not in known:  # asked for, but its document was not among the passages
                facts.append(fact_dict(fact))
        # one entry per section: two passages of one section (a long one, chunked) are one source to the customer
        cites = list({(c["document_id"], c["revision"], c["anchor"]): c for c in map(citation, passages)}.values())
        cited = {(c["document_id"], c["revision"]) for c in cites}
        for fact in asked:
            if (fact.document_id, fact.revision) not in cited:
                cites.append({"document_id": fact.document_id, "revision": fact.revision,
                              "title": self._title(fact.document_id, fact.revision), "heading": None,
                              "anchor": fact.anchor})
                cited.add((fact.document_id, fact.revision))
        resolve = self._slot_resolver(at)
        # a question the KB answers for everyone needs no order number: requests for one are dropped
        # "How do I ask for a price match?" names a fact ("price") and asks for a procedure: the procedure
        # leads, and a key fact the reply then leaves out is still added at the end
        how_to = bool(HOW_TO_RE.search(text))
        # what the policy rules out ("We do not accept cheques"), read from the retrieved passages and
        # the whole of each retrieved document (a passage can be part of a section, without the sentence:
        # "Can I stop getting delivery e-mails?" retrieves the newsletter's "Unsubscribe" section, and the
        # sentence is in "What we always send"); a revision's sections are read once per process
        documents = dict.fromkeys((p.get("document_id"), p.get("revision")) for p in passages)
        whole = passages + [s for doc in documents for s in self._sections(*doc)]
        ruled_out = policy_limits(whole)
        refused = asked_limit(asking, ruled_out) if self.limits else None
        if self.limits and refused is None:
            # "Do you accept Bitcoin?" against "We accept Visa, ..., Klarna and Larkspur gift cards."
            refused = asked_outside(asking, whole, self._similarity())
        # "What payment methods do you accept?", "Which countries do you ship to?": the KB's list answers it,
        # not a figure of the list's document ("Delivery time to other EU countries")
        # "Do you accept credit cards?": the list's line about cards, which names them (no yes: not every card)
        enumerated = ((asked_for_list(asking, whole) or asked_kind(asking, whole))
                      if self.limits and self.procedures and not refused else None)
        if refused or enumerated:
            asked = []  # the answer is "no", or the list, in the policy's words; not a figure beside the point
        # a question not about a figure ("Can I cancel my order?", "my lamp arrived broken") may be
        # answered by a retrieved procedure too; the model's own steps are never shown (see below)
        wants_steps = how_to or not asked
        kb_answered = refused is not None or enumerated is not None
        steps_from_kb = (procedure(text, passages, products=self.products)
                         if self.procedures and wants_steps and not kb_answered else None)
        if steps_from_kb is not None and not _names_asked(text, steps_from_kb[0], "heading", "title"):
            # steps that merely mention what is asked ("I want to return a lamp": "When it is too late" of
            # "Changing an order", whose last step is "Return the unwanted item") give way to the steps of a
            # section of a retrieved document whose heading names it ("Register your return"); steps under a
            # title that names it stay ("How do I place an order?": "Step by step" of "Placing an order")
            named = [s for s in self._other_sections(passages) if _names_asked(text, s, "heading")]
            steps_from_kb = procedure(text, named, products=self.products) or steps_from_kb
        prose: tuple[dict[str, Any], str] | None = None
        # "my package arrived and the vase is smashed", "the kettle stopped working": the steps the KB gives for
        # reporting a damaged or faulty item, from the retrieved documents (the problem's words find them; a vase
        # is named nowhere), ahead of steps that merely share the customer's other words ("arrived", "package")
        problem = (reported_problem(text, passages, self.products) if self.procedures and not asked and not kb_answered
                   else frozenset())
        if problem:
            candidates = passages + self._other_sections(passages)
            candidates.sort(key=lambda p: not problem & _stems(str(p.get("title") or "")))  # its own policy first
            steps_from_kb = procedure(" ".join(sorted(problem)), candidates, products=self.products) or steps_from_kb
        # a danger ("it sparks", "smells of burning"): what the KB says to do about it leads, in place of steps
        # for reporting it (the sample KB's "contact us by phone or chat rather than the form")
        if (self.procedures and not asked and not kb_answered and _HAZARD_RE.search(text)
                and (hazard := hazard_answer(text, passages + self._other_sections(passages)))):
            prose, steps_from_kb = hazard, None
        if self.procedures and how_to and steps_from_kb is None and not kb_answered:
            # the right document was found but not its steps ("How do I create an account?" retrieves
            # "Who can open an account"): the other sections of the retrieved documents are read too
            others = self._other_sections(passages)
            steps_from_kb = procedure(text, others, every_term=True, products=self.products, context=passages)
            if steps_from_kb is None:  # answered in prose ("How do I use a gift card?"), if at all
                prose = prose_answer(text, passages) or prose_answer(text, others)
        # "Can I pay with Klarna?": yes, in the KB's words about it (the model's own account of how Klarna
        # works goes, as beside any answer of the KB's)
        listed = (asked_listed(asking, whole) if self.limits and self.procedures and not kb_answered and not asked
                  and steps_from_kb is None and prose is None else None)
        unconfirmed = False
        if listed or enumerated:
            prose = listed or enumerated
        elif (self.yes_no and self.procedures and prose is None and steps_from_kb is None and not kb_answered
              and not asked and is_yes_no(asking)):
            # "Do you assemble furniture?": the section the question names ("Assembly": "Assembly is not
            # included. ...") answers it, not the model, whose yes comes to anything it is asked
            # (a heading naming half the question at least: "Name and phone number" does not answer "Can I
            # place an order by phone?")
            # (in the KB's words: "Do gift cards expire?" asks whether they are valid, and the "Gift card not
            # accepted" section's "check that the card has not expired" does not answer it)
            said = same_words(asking)
            prose = (prose_answer(said, passages, named_share=0.5)
                     or prose_answer(said, self._other_sections(passages), named_share=0.5)
                     or stating_sentence(asking, whole, self.products))
            # no sentence of the policy names what is asked ("Do you offer student discounts?"): the bot
            # cannot say yes to it, and says so instead of the model's "Certainly!"
            unconfirmed = prose is None and bool(asked_thing(asking))
        if refused:
            prose = (refused.passage, refused.sentence)
        shown = steps_from_kb or prose
        # (a passage's heading and title are the KB's words too: "Options in the Netherlands and Belgium")
        evidence = ([p["text"] for p in passages] + [str(p.get(k) or "") for p in passages for k in ("heading", "title")]
                    + ([shown[0]["text"]] if shown else [])
                    + [str(f["value"]) for f in facts])
        grounder = Grounder(resolve, evidence, customer_values, conversation=[text] + [t for _, t in history],
                            needs_no_details=bool(asked) or kb_answered or listed is not None,
                            charges=[str(f.value) for f in asked if _is_charge(str(f.value))],
                            # a reply's steps are the KB's: the model's numbered steps are dropped for
                            # every question (``procedures=False``, the benchmarks' baseline, keeps them,
                            # checked for screens, wherever a fact question is not asked)
                            steps=False if self.procedures else not asked or how_to,
                            limits=ruled_out if self.limits else (), asked_limit=refused,
                            # the KB's own answer leads: the model's other content goes (not in the
                            # baseline without procedures)
                            kb_answer=(bool(shown) or unconfirmed) and self.procedures,
                            asked_values=[fact_value_text(f) for f in asked],
                            # "Is there a warranty on lamps?" answered with a figure: the figure is the
                            # answer, not the model's "Absolutely!"
                            unbacked_yes=asked_thing(asking) if asked and self.yes_no and not kb_answered
                            else frozenset(),
                            facts=[(f["placeholders"], f.get("value_text", str(f["value"]))) for f in facts])
        # the asked fact, in the policy's words, goes right after the model's opening sentence; for a
        # question about how to do something, the procedure the knowledge base documents does
        lead = " ".join(dict.fromkeys(fact_statement(asking, passages, f) for f in asked))
        if shown:
            lead = (procedure_statement(*steps_from_kb) if steps_from_kb else limit_statement(asking, refused)
                    if refused else f"Yes. {prose_statement(*prose)}" if listed else prose_statement(*prose))
            source = citation(shown[0])  # the section the steps come from is cited first
            cites = [source] + [c for c in cites if c != source]
        if unconfirmed:
            lead = UNCONFIRMED_TEXT
        if asked and not shown:
            # the answer's source is cited first ("return a lamp" retrieves "Changing an order" first)
            answer_source = (asked[0].document_id, asked[0].revision)
            cites = sorted(cites, key=lambda c: (c["document_id"], c["revision"]) != answer_source)
            value = asked[0].value
            answers_it: Callable[[str], bool] = lambda piece: states_value(piece, value)  # noqa: E731
        else:
            answers_it = lambda piece: False  # noqa: E731

        prefix = ANGRY_ACK + " " if tone == "angry" else ""
        if prefix:
            emit(prefix)
        if grounded_only or not passages:
            body = grounded_quote(passages) if passages else UNSURE_REPLY
            if grounded_only and passages:
                body = "I can only help with our store's policies. " + body
            emit(body)
            return AnswerResult(prefix + body, cites if passages else [], "fallback",
                                {"verdict": "fallback", "reason": "grounded_only" if grounded_only else "no_passages"})

        from models.prompting import build_messages

        messages = build_messages(
            message=text, intent=intent, tone=tone, facts=facts, passages=passages,
            history=history[-6:], company_name=self.company_name,
        )
        started = time.perf_counter()
        out: list[str] = []
        error = None
        stream = None
        try:
            stream = self.generator.stream(messages, adapter_id=self.adapter_id,
                                           max_new_tokens=self.max_new_tokens)
            checked_stream = grounder.filter_stream(self._deadline(stream, started), cut=lambda: _hit_cap(stream))
            # the KB's no, list or yes opens the reply, as does saying the policy does not say
            first = kb_answered or listed is not None or unconfirmed
            for checked in _answer_first(checked_stream, lead, answers_it, grounder, first=first):
                out.append(checked)
                emit(checked)
        except Exception as exc:  # generator crashed or timed out mid-stream
            log.warning("generation failed: %s", exc)
            error = f"{type(exc).__name__}: {exc}"
            if stream is not None:
                stream.close()
        gen = getattr(stream, "result", None)
        stats: dict[str, Any] = {}
        if gen is not None:
            stats = {"model_id": gen.model_id, "adapter_id": gen.adapter_id, "prompt_tokens": gen.prompt_tokens,
                     "completion_tokens": gen.completion_tokens, "finish_reason": gen.finish_reason,
                     "first_token_s": gen.first_token_s}
        raw = [gen.text] if gen is not None else []
        elapsed = (time.perf_counter() - started) * 1000
        body = "".join(out).strip()
        report = grounder.report.to_dict()
        verdict = grounder.report.verdict
        # only when the best match is missing from the reply (then a close second is added too)
        if lead and lead in body:  # placed after the opening sentence by _answer_first
            report["unconfirmed" if unconfirmed else "added_procedure" if steps_from_kb else "added_limit" if refused else "added_listed" if listed or enumerated
                   else "added_prose_answer" if prose else "added_fact_statement"] = lead
        unstated = [f for f in asked if not states_value(body, f.value)] if asked and not states_value(
            body, asked[0].value) else []
        if not error and len(body) >= 20 and unstated:
            # The customer asked for a key fact and the reply does not state its current value:
            # add it in the knowledge base's words (what keeps replies current after a policy edit).
            added = " ".join(dict.fromkeys(fact_statement(asking, passages, f) for f in unstated))
            emit("\n" + added)
            body = f"{body}\n{added}"
            report["added_fact_statement"] = added
        elif not error and len(body) >= 20 and not asked and not shown and (
                # after "I can't find a clear answer", only a page named after what was asked is quoted
                not unconfirmed or titled_after(asking, passages[0])):
            support = supporting_sentence(text, passages, facts, body)
            if support:
                # The model answered around the fact without stating it: add the policy's own words.
                emit("\n" + support)
                body = f"{body}\n{support}"
                report["added_policy_sentence"] = support
            elif passages and not how_to and only_courtesy(grounder.report.sentences):
                # "What is your return policy?": the model wrote an opening line, steps (dropped) and a
                # sign-off; nothing of the policy is left to read, so the policy is quoted
                quote = grounded_quote(passages)
                emit("\n" + quote)
                body = f"{body}\n{quote}"
                report["added_quote"] = quote
        if error or len(body) < 20:
            # Too little survived (or the model failed): fall back to quoting the policy; not the section whose
            # steps or words the reply already gave (a timeout after "Here is how (Report it quickly)" quoted
            # "Report it quickly" again)
            shown_at = (shown[0].get("document_id"), shown[0].get("anchor")) if shown else None
            fallback = grounded_quote([p for p in passages if (p.get("document_id"), p.get("anchor")) != shown_at]
                                      or passages)
            # (a fact the answer-first statement already gave is not given twice)
            missing = [fact_statement(asking, passages, f) for f in asked
                       if not states_value(body + "\n" + fallback, f.value)]
            if missing:
                fallback = " ".join(dict.fromkeys(missing)) + "\n" + fallback
            sep = "\n" if body else ""
            emit(sep + fallback)
            body = (body + sep + fallback).strip()
            verdict = "fallback"
            report["verdict"] = "fallback"
        elif self.procedures and how_to and not shown and any(
                not s.kept and s.reason == STEP_DROPPED for s in grounder.report.sentences):
            # the steps the customer asked for were the model's own: say so instead of guessing
            emit("\n" + NO_PROCEDURE_NOTE)
            body = f"{body}\n{NO_PROCEDURE_NOTE}"
            report["no_documented_procedure"] = True
        return AnswerResult(
            text=prefix + body,
            citations=cites,
            verdict=verdict,
            guardrail=report,
            model_id=stats.get("model_id"),
            adapter_id=stats.get("adapter_id", self.adapter_id),
            prompt=messages,
            raw_output="".join(raw),
            prompt_tokens=stats.get("prompt_tokens"),
            completion_tokens=stats.get("completion_tokens"),
            generation_ms=elapsed,
            error=error,
            extra={"finish_reason": stats.get("finish_reason"), "first_token_s": stats.get("first_token_s")},
        )

    def _deadline(self, stream: Any, started: float) -> Iterator[str]:
        """Stop a generation that runs past the timeout (the caller then quotes the policy)."""
        for piece in stream:
            yield piece
            if self.timeout_s is not None and time.perf_counter() - started > self.timeout_s:
                raise TimeoutError(f"generation took longer than {self.timeout_s:.0f} s")

    def _slot_resolver(self, at: datetime) -> Callable[[str], str | None]:
        def resolve(slot: str) -> str | None:
            fact = self.knowledge.resolve_placeholder(slot, at=at)
            # with its unit ("14 days"); the guardrail leaves the unit out where the reply writes it
            return None if fact is None else fact_value_text(fact)

        return resolve
