"""What the policy rules out: "We do not accept cheques", "A shipped order can no longer be cancelled".

The small model says yes to almost anything it is asked ("Absolutely! We accept cheques."): the tickets
it learnt from are about things that can be done. A figure or a screen name it makes up is caught by
the guardrail's other checks; a made-up "yes" names neither. The knowledge base states what is not
possible in plain sentences, and those are read here from the retrieved text:

* a question about one of them (:func:`asked_limit`) is answered with the policy's own sentence (the
  responder puts it first), and the model's "Certainly!" and its sentences about the thing go;
* any reply sentence that says the ruled-out thing with no negation or condition (:func:`contradicts`)
  is dropped by the guardrail, asked or not.

Two sentence shapes are read, clause by clause:

* "we/you <not> <verb> <things>": "We do not accept cash on delivery, cheques or payment by bank
  transfer in advance" rules out three things, each named by its own words (the verb is optional in a
  question: "Can I pay cash on delivery?" asks about the second);
* "<subject> <not> <predicate>": "Guest orders cannot be changed online", "Assembly is not included";
  the subject's and the predicate's words together name the thing.

A pronoun object points back to the clause before ("Order, delivery, return and account e-mails are
always sent; you cannot switch them off"), a list's shared last word goes with each item ("order
e-mails", "account e-mails"), and the examples of an aside are things of their own ("Other
combinations, such as two cards, are not possible"). The sentence after a limit in its paragraph comes
with it when it says what to do instead ("Return the item and order the one you want").

Matching is on crude stems and deliberately strict (every word of the thing, one may be missing when it
has four or more): "How do I cancel my order?" does not match "A shipped order can no longer be
cancelled", "Can I cancel my order after it has shipped?" does. A thing needs two words, counting its
verb ("accept cheques"); what is missed is simply not checked, as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from bot.conversation.words import EU_MEMBERS, problems_named, self_caused_damage, stem, terms

_NEG = (r"(?:do not|don't|does not|doesn't|cannot|can't|can not|can no longer|will not|won't|never|no longer|"
        r"are not able to|is not|isn't|are not|aren't|must not|may not|is never|are never)")
# "We do not accept cash on delivery, cheques or payment by bank transfer in advance."
_WE_NOT = re.compile(
    r"\b(?:we|you)\s+(?:do not|don't|cannot|can't|can not|can no longer|will not|won't|never|no longer|"
    r"are not able to)\s+(?:(?:currently|yet|ever)\s+)?(?P<verbs>[a-z]+(?:\s+or\s+[a-z]+)?)\s+(?P<obj>.+)$", re.I)
# "Guest orders cannot be changed online." (a subject of at most six words that is not a pronoun)
_THING_NOT = re.compile(rf"^(?P<subj>(?:[A-Za-z][\w'-]*,?\s+){{1,6}}?){_NEG}\s+(?P<pred>.+)$", re.I)
# a subject that is a pronoun, a condition or an instruction names no thing ("If the item cannot ...",
# "Please never send ...", "For small items we usually do not need ...")
_NOT_A_SUBJECT = re.compile(
    r"^(?:this|that|there|these|those|which|what|who|if|when|once|because|while|as|although|though|to|and|but|"
    r"so|for|please)\b|\b(?:we|you|i|it|they|he|she)\b", re.I)
# "you do not have to wait": no rule, a relief; such verbs rule nothing out
_NOT_A_RULE = {"have", "need", "hesitate", "worry", "mind", "guess", "want", "know", "wait", "forget"}
# where a clause's thing ends: its reason or condition is not part of what is ruled out
_CLAUSE_END = re.compile(r",?\s+(?:because|so that|so|as|since|unless|until|once|when|if|which|but|though|"
                         r"although)\b.*$|[;:—–(].*$", re.I)
_ITEM_SPLIT = re.compile(r",\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+", re.I)
# words that say nothing about which thing is meant ("not possible", "in advance", "at the moment")
_FILLER = {"possibl", "abl", "allow", "availabl", "directly", "advance", "moment", "present", "currently",
           "themselv", "itself", "yet", "other", "such", "also", "still", "any", "always", "all", "once",
           "again", "while", "already", "at", "by", "as", "from", "into", "after", "before", "over", "under", "about",
           "per", "every", "anything", "something", "them", "their", "its", "they", "he", "she", "more", "than",
           "some", "each", "not", "no", "never", "longer", "cannot", "can't", "don't", "won't", "just", "even",
           "only", "off", "up", "out", "away", "back", "within", "without", "between", "through", "here",
           "now", "then", "ever", "however", "therefore", "instead", "whether", "who", "which", "where",
           "when", "why", "whose", "would", "could", "should", "will", "shall", "may", "might", "must",
           "has", "had", "have", "was", "were", "been", "being", "am", "get", "make", "let"}
# A reply sentence that denies, limits or conditions the thing, or says back what the customer wants
_QUALIFIED = re.compile(
    r"\b(?:not|no|never|cannot|unable|unfortunately|only|except|unless|until|before|instead|rather|neither|"
    r"nor|would like|want|wants|wish|wishes|asking|asked|interested|hoping|hope|whether)\b|n't\b|n’t\b", re.I)
# "Certainly!", "Yes, of course." on its own: the model's yes
_ASSENT = re.compile(r"^(?:(?:yes|yeah|yep|certainly|of course|absolutely|sure|definitely|indeed|great news|"
                     r"good news|great question|you can|you're in luck)[\s,!.]*)+$", re.I)


def _key(word: str) -> str:
    """A word's stem, folded a little further for this module: "used" -> "us" (as "use"), "cancelled"
    -> "cancel", "shipped" -> "ship", "payment" -> "pay", "deletion" -> "delet" (as "delete")."""
    if word.endswith("ie") and len(word) > 4:  # "companies" (folded to "companie" as a plural) is "company"
        word = word[:-2] + "y"
    key = stem(word)
    if key == word and word.endswith("ed"):
        key = stem(word[:-1])
    for suffix in ("ment", "ion"):
        if key.endswith(suffix) and len(key) - len(suffix) >= 3:
            key = key[: -len(suffix)]
    if len(key) >= 4 and key[-1] == key[-2] and key[-1] not in "aeiou":
        key = key[:-1]
    return key


_FILLER_KEYS = {_key(w) for w in _FILLER}
_POLICY_VERBS = {_key(w) for w in ("accept", "offer", "deliver", "ship", "match", "publish", "swap", "exchange",
                                    "sell", "refund", "include", "charge", "take", "allow", "support", "provide")}


# the same thing said two ways: "we cannot take back pillows" rules out returning them
_SAME = [(re.compile(r"\b(?:take|takes|taken|took|taking|send|sending|sent)\s+back\b", re.I), "return"),
         (re.compile(r"\be-mail", re.I), "email"),
         # "Can I exchange an item?" asks what "We do not swap items directly" rules out
         (re.compile(r"\bexchang(?:e|es|ed|ing)\b", re.I), "swap"),
         # "Do gift cards expire?" is answered by "Gift cards are valid for 3 years"
         (re.compile(r"\b(?:expir(?:e|es|ed|ing|y|ation)|validity)\b", re.I), "valid"),
         (re.compile(r"\bguarantee(?:s|d)?\b", re.I), "warranty"),
         # "How much do I need to spend for free delivery?" asks for what the KB calls the free-shipping
         # threshold (MiniLM reads "free delivery" as a delivery price, "free shipping threshold" as the threshold)
         (re.compile(r"\b(?:free\s+deliver(?:y|ies)|deliver(?:y|ies)\s+(?:is\s+|for\s+)?free|free[\s-]shipping)\b"
                     r"(?![\s-]+threshold)", re.I), "free shipping threshold")]


def same_words(text: str) -> str:
    """``text`` with the words :data:`_SAME` folds said the one way ("exchange" -> "swap"), and a damaged or
    failing item in the policy's words (:func:`~bot.conversation.words.problems_named`)."""
    for pattern, word in _SAME:
        text = pattern.sub(word, text)
    return problems_named(text)


def stems(text: str) -> set[str]:
    text = same_words(text)
    return {_key(w) for w in terms(text.replace("-", " "))} - _FILLER_KEYS


@dataclass(frozen=True)
class Limit:
    """One thing a KB sentence rules out."""

    sentence: str  # the whole KB sentence, as the customer reads it
    thing: frozenset[str]  # the words naming what is ruled out ("cash", "delivery")
    verbs: frozenset[str]  # "we do not <verb>": optional in a question, needed in a generic reply check
    passage: dict[str, Any]
    #: the sentence after it in the same paragraph, when that one says what to do instead ("We do not
    #: swap items directly. Return the item and order the one you want; ..."); empty otherwise
    then: str = ""
    #: False: the sentence lists what there is, and whether the asked thing is among it is left to the
    #: customer to read (see :func:`asked_outside`); the answer opens with no "no"
    says_no: bool = True

    @property
    def key(self) -> frozenset[str]:
        return self.thing | self.verbs


def _sentences(markdown: str) -> list[str]:
    lines = [re.sub(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+", "", line).replace("**", "").strip()
             for line in markdown.splitlines() if line.strip() and not re.match(r"\s*(?:#|\|)", line)]
    # (a retrieved passage has its lines joined: a list item's marker can open a sentence there)
    sentences = (s.strip().lstrip("-*• ").strip() for line in lines for s in re.split(r"(?<=[.!?])\s+", line))
    return [s for s in sentences if len(s) >= 12]


# a section about what is ruled out: "What you cannot return", "What is not covered"
_NEG_HEADING = re.compile(
    r"^\s*(?:what|which|things|items)?\s*(?:you|we)?\s*(?:cannot|can't|can not|do not|don't|will not|won't)\s+"
    r"(?P<verb>[a-z]+)\b|^\s*(?:what|which)?\s*(?:is|are)\s+not\s+(?P<verb2>[a-z]+)\b", re.I)
_LIST_LINE = re.compile(r"^\s*[-*•]\s+(?P<item>.+)$")
_LABEL = re.compile(r"^(?P<label>[^:]{2,40}):\s+(?P<examples>.+)$")
_PRONOUN = re.compile(r"\b(?:we|you|they|these|those|it|us|them)\b", re.I)
_PREPOSITION = re.compile(r"\s+(?:on|in|from|after|for|by|with|of|at|to)\s+.*$", re.I)


def _heading_limits(p: dict[str, Any], verb: str) -> list[Limit]:
    """The list under a heading that rules things out: each item is a thing ("What you cannot return:
    - Cut-to-measure curtains and fabric sold by the metre."), with the heading's verb. Items of a
    labelled list of examples ("Normal wear: fading textiles, scratches on wooden surfaces") stand
    alone by their head words ("scratches"); a thing otherwise needs two words ("Gift cards"), not
    "Shipped" alone from "An order that is already Packed, Shipped or Delivered"."""
    out: list[Limit] = []
    verbs = frozenset(stems(verb))
    for line in str(p.get("text", "")).splitlines():
        m = _LIST_LINE.match(line)
        if not m:
            continue
        item = m.group("item").replace("**", "").strip()
        first, _, rest = item.partition(". ")
        first = first.rstrip(".")
        things: list[frozenset[str]] = []
        labelled = _LABEL.match(first)
        if labelled and _PRONOUN.search(labelled.group("examples")):
            # "Merging two accounts: contact us, we move the orders for you": an explanation, not examples
            things = [t for t in [frozenset(stems(labelled.group("label"))) - _ITEM] if len(t) >= 2]
        elif labelled:
            things.append(frozenset(stems(labelled.group("label"))) - _ITEM)
            for element in _ITEM_SPLIT.split(_CLAUSE_END.sub("", labelled.group("examples"))):
                full = frozenset(stems(element)) - _ITEM
                head = frozenset(stems(_PREPOSITION.sub("", element))) - _ITEM
                things += [full, head] if head != full else [full]
            things = [t for t in things if t]
        else:
            parts = [t - _ITEM for t in _things(_CLAUSE_END.sub("", first))]
            whole = frozenset(stems(_CLAUSE_END.sub("", first))) - _ITEM
            things = [t for t in parts if len(t) >= 2] + ([whole] if 2 <= len(whole) <= 3 else [])
        sentence = first + "."
        then = _instead(rest.strip()) if rest.strip() else ""
        out += [Limit(sentence, t, verbs, p, then) for t in dict.fromkeys(things)]
    return out


def limits(passages: list[dict[str, Any]]) -> list[Limit]:
    """The things the passages' sentences rule out."""
    found: list[Limit] = []
    for p in passages:
        if h := _NEG_HEADING.match(str(p.get("heading") or "")):
            found += _heading_limits(p, h.group("verb") or h.group("verb2"))
        for paragraph in str(p.get("text", "")).splitlines():
            sentences = _sentences(paragraph)
            for i, sentence in enumerate(sentences):
                here: list[Limit] = []
                previous = ""
                for clause in _clauses(sentence.rstrip(".!?")):
                    here += _clause_limits(sentence, clause.strip(), p, previous)
                    previous = clause
                if here and i + 1 < len(sentences):
                    then = _instead(sentences[i + 1])
                    here = [Limit(x.sentence, x.thing, x.verbs, x.passage, then) for x in here]
                found += here
    return found


def _instead(sentence: str) -> str:
    """``sentence`` when it can follow a "no" as what to do instead: not another rule, not the opening
    of a list ("You have two options:"), not long."""
    if sentence.rstrip().endswith(":") or len(sentence) > 240:
        return ""
    if any(_clause_limits(sentence, c.strip(), {}, "") for c in _clauses(sentence.rstrip(".!?"))):
        return ""
    return sentence


def _clauses(sentence: str) -> list[str]:
    """A sentence's clauses: split at ";" and ":", and before ", and ..." / ", but ..." when what follows
    rules something out on its own ("... by large-item delivery, and next-day delivery is not possible
    for made-to-order pieces"); a list of things ("cash, cheques, and bank transfers") stays whole."""
    out: list[str] = []
    for part in re.split(r";\s*|:\s+|,?\s+(?=(?:but|and|so)\s+(?:we|you|it|they)\b)", sentence):
        pieces = re.split(r",\s+(?:and|but)\s+", part)
        current = pieces[0]
        for piece in pieces[1:]:
            if _THING_NOT.match(piece) and not _NOT_A_SUBJECT.search(_THING_NOT.match(piece).group("subj")):
                out.append(current)
                current = piece
            else:
                current += ", and " + piece
        out.append(current)
    return out


# "them off", "it", "those": an object that names its thing in the clause before
_PRONOUN_OBJECT = re.compile(r"^(?:them|it|these|those|this|that)\b", re.I)
# the subject a clause opens with ("Order, delivery, return and account e-mails are ..."), for a pronoun
# in the next clause to point back to
_SUBJECT = re.compile(r"^(?P<subj>(?:[A-Za-z][\w'-]*,?\s+){1,6}?)(?:are|is|can|cannot|can't|do|does|don't|"
                      r"doesn't|will|won't|have|has|stay|stays|get|gets)\b", re.I)
# "Other combinations, such as two cards, are not possible": the examples are ruled out too
_SUCH_AS = re.compile(r",?\s+such as\s+(?P<examples>.+?),?\s*$", re.I)


def _things(phrase: str) -> list[frozenset[str]]:
    """The things a list names, each by its own words: "cash on delivery, cheques or payment by bank
    transfer" is three. A shared last word goes with every item: "Order, delivery, return and account
    e-mails" are order e-mails, delivery e-mails, return e-mails and account e-mails."""
    items = [i for i in _ITEM_SPLIT.split(phrase) if i.strip()]
    last = items[-1].split() if items else []
    # (not "pillows, duvets and mattress protectors": the plurals are things of their own)
    shared = len(items) >= 2 and len(last) >= 2 and all(len(i.split()) == 1 and not i.strip().lower().endswith("s")
                                                        for i in items[:-1])
    return [frozenset(stems(f"{item} {last[-1]}" if shared else item)) for item in items]


def _clause_limits(sentence: str, clause: str, passage: dict[str, Any], previous: str = "") -> list[Limit]:
    out: list[Limit] = []
    clause = same_words(clause)
    if m := _WE_NOT.search(clause):
        verbs = [v for v in re.split(r"\s+or\s+", m.group("verbs").lower())]
        if any(v in _NOT_A_RULE for v in verbs):
            return out
        verb_stems = frozenset(stems(" ".join(verbs)))
        obj = _CLAUSE_END.sub("", m.group("obj"))
        if _PRONOUN_OBJECT.match(obj) and (s := _SUBJECT.match(same_words(previous))):
            # "... e-mails are always sent; you cannot switch them off": the e-mails are what is ruled out
            obj = s.group("subj").strip().rstrip(",")
        for thing in _things(obj):
            if thing and len(thing | verb_stems) >= 2:
                out.append(Limit(sentence, thing, verb_stems, passage))
        return out
    if (m := _THING_NOT.match(clause)) and not _NOT_A_SUBJECT.search(m.group("subj")):
        subject_text = m.group("subj")
        such = _SUCH_AS.search(subject_text)
        subject = stems(subject_text[: such.start()] if such else subject_text)
        pred = _CLAUSE_END.sub("", m.group("pred"))
        # "be returned or exchanged for cash": two things, the subject's words in each
        for alternative in re.split(r"\s+or\s+", pred):
            thing = frozenset(subject | stems(alternative))
            if len(thing) >= 2 and subject:
                out.append(Limit(sentence, thing, frozenset(), passage))
            for example in _things(such.group("examples")) if such else []:
                # "such as two cards": each example with the predicate's words
                thing = frozenset(example | stems(alternative))
                if len(thing) >= 2:
                    out.append(Limit(sentence, thing, frozenset(), passage))
    return out


#: share of a question's words one retrieved passage must contain for the question to be about the KB
COVERED = 2 / 3


# how people ask, not what they ask about
_ASKING = {_key(w) for w in ("want", "need", "like", "wish", "hi", "hello", "hey", "thanks", "thank", "please",
                              "help", "tell", "know", "question")}


# how the policy names whatever the shop sells
_ITEM = frozenset({_key(w) for w in ("item", "items", "product", "products", "article", "articles")})


def product_words(names: Iterable[str]) -> frozenset[str]:
    """The words of the shop's product names ("Brass reading lamp", "Jute rug 160x230"), as stems, sizes
    and figures left out: a customer's "lamp" is an item to the policy."""
    out: set[str] = set()
    for name in names:
        out |= {w for w in stems(re.sub(r"\S*\d\S*", " ", name.split(",")[0])) if len(w) >= 3 and w.isalpha()}
    return frozenset(out - _ITEM)


def covers(question: str, passages: list[dict[str, Any]], products: Collection[str] = ()) -> bool:
    """Whether one of ``passages`` uses (nearly) every word of ``question``: the KB speaks about it.

    The intent model knows the ticket intents; the knowledge base covers more ("Can I pay cash on
    delivery?", "Do you price match marketplace sellers?"). A question the intent model calls out of
    scope is still answered when a retrieved passage contains two thirds of its words, two at least
    (how people ask, "I want", "please", "thanks", aside). A word of the shop's product names
    (``products``, see :func:`product_words`) counts as used by a passage about items: "Can I return a
    lamp?" is covered by the returns policy, which speaks of items, not lamps.
    Measured on the project's questions and out-of-scope messages (`benchmarks/RESULTS.md`).
    """
    q = stems(question) - _ASKING
    if len(q) < 2:
        return False
    for p in passages:
        text = stems(f"{p.get('title') or ''} {p.get('heading') or ''} {p.get('text') or ''}")
        used = {w for w in q if w in text or (w in products and text & _ITEM)}
        if len(used) >= max(2, COVERED * len(q)):
            return True
    return False


def _enough(shared: int, size: int) -> bool:
    """Every word of a thing, or all but one of four or more."""
    return size >= 2 and shared >= size - (1 if size >= 4 else 0)


# what is done to an order or an account: a limit on one of these is no answer to a question about another
_ORDER_ACTIONS = {**{_key(w): "change" for w in ("change", "changing", "edit", "modify", "amend")},
                  **{_key(w): w for w in ("cancel", "return", "swap", "delete")}}


def _other_action(question_words: set[str], limit: Limit) -> bool:
    """Whether the question asks to do one thing to an order and the limit rules out another: "Can I cancel
    my order after it has been packed?" is not answered by "What you cannot change: an order that is
    already Packed" (it can still be cancelled, for a fee)."""
    asked = {_ORDER_ACTIONS[w] for w in question_words if w in _ORDER_ACTIONS}
    ruled = {_ORDER_ACTIONS[w] for w in limit.verbs | limit.thing if w in _ORDER_ACTIONS}
    return bool(asked and ruled and not asked & ruled)


_BEFORE_CLAUSE = re.compile(r"\b(?:before|until)\b[^,.;:?!]*", re.I)
# how the customer paid ("if I paid with a gift card"): the means of payment, not the thing asked about
_PAID_WITH = re.compile(r"\b(?:paid|pay|paying|bought|purchased)\s+(?:it\s+|them\s+|for\s+it\s+)?(?:with|by|using|via)\s+"
                        r"(?:(?:a|an|my|the|our)\s+)?[\w-]+(?:\s+[\w-]+)?", re.I)
_PAY_VERBS = {_key(w) for w in ("pay", "paid", "accept", "use", "using", "take")}


def asked_limit(question: str, candidates: list[Limit]) -> Limit | None:
    """The limit ``question`` asks about ("Can you deliver to a PO box?"), or None.

    Every word of the thing must be in the question (all but one of four or more), and two words at
    least of the thing and its verb together. Of several, the one sharing most words wins. A limit on
    another thing done to an order (changing it, asked about cancelling it) is none.
    """
    # "cancel my order before it ships" asks about an order not shipped yet: not about "A shipped order can no
    # longer be cancelled"
    q_all = stems(_BEFORE_CLAUSE.sub(" ", question))
    # "How do I get my money back if I paid with a gift card?" is not about returning gift cards ("What you
    # cannot return: Gift cards"): the means of payment counts only for a limit on paying
    q_asked = stems(_PAID_WITH.sub(" ", _BEFORE_CLAUSE.sub(" ", question)))
    best: tuple[float, int, Limit] | None = None
    for rank, limit in enumerate(candidates):
        q = q_all if limit.verbs & _PAY_VERBS else q_asked
        if _other_action(q, limit):
            continue
        shared = len(limit.thing & q)
        if not _enough(shared, len(limit.thing)) and not (len(limit.thing) == 1 and shared == 1):
            continue
        together = len(limit.key & q)
        if together < 2:
            continue
        score = (together / len(limit.key), -rank)
        if best is None or score > best[:2]:
            best = (*score, limit)
    return best[2] if best else None


def contradicts(sentence: str, candidates: list[Limit], asked: Limit | None = None) -> Limit | None:
    """The limit ``sentence`` says the opposite of, if any.

    A sentence that names a ruled-out thing and its verb ("We accept cheques."), with no negation,
    condition or wish in it, says the opposite of the policy. For the thing the customer asked about its
    words are enough ("You can place a cheque with us."); a bare "Certainly!" then is the model's yes.
    """
    if asked is not None and _ASSENT.match(sentence.strip()):
        return asked
    if _QUALIFIED.search(sentence):
        return None
    words = stems(sentence)
    if asked is not None:
        shared = len(asked.thing & words)
        if _enough(shared, len(asked.thing)) or len(asked.thing) == 1 and shared == 1:
            return asked
        # its verb and all but one of its words: "we'll match the price of the marketplace"
        if asked.verbs & words and shared and shared + 1 >= len(asked.thing) and len(asked.key) >= 3:
            return asked
    for limit in candidates:
        # two words ("help", "parcel") are too common to read as a contradiction, unless the verb is
        # one a policy rules things out with ("accept", "cheque")
        if (len(limit.key) >= 3 or len(limit.key) == 2 and limit.verbs & _POLICY_VERBS) and limit.key <= words:
            return limit
        if len(limit.thing) >= 3 and limit.thing <= words:  # "You can pay by bank transfer."
            return limit
    return None


# --- what the policy lists, and nothing else ---------------------------------------------------------
#
# "We accept Visa, Mastercard, ..., Klarna and Larkspur gift cards." names every method there is; asked
# "Do you accept Bitcoin?" the model says "Certainly!". Nothing in the KB says "We do not accept
# Bitcoin", so :func:`asked_limit` finds nothing. Read here: a sentence that lists what is offered, or
# restricts it with "only" ("We charge in euros only"), and a yes/no question about one more thing of
# the same kind that the list does not name.

# how a list is introduced, and how a question asks about one more of its things
_LIST_OPENING = re.compile(r"^(?:we|you can)\s+(?P<verb>accept|take|ship|deliver|send)\s+(?P<rest>.+)$", re.I)
_GROUP = {"accept": "pay", "take": "pay", "ship": "ship", "deliver": "ship", "send": "ship"}
_ASKING_ABOUT = {
    # "Do you accept Bitcoin?", "Can I pay for my order with Bitcoin?"
    "pay": re.compile(r"\b(?:accept|take|pay(?:ing)?(?:\s+for(?:\s+[\w-]+){1,3}?)?\s+(?:with|by|using|via))\s+"
                      r"(?P<obj>[^?.!,;]+)", re.I),
    # "Do you ship to the United States?", "Can you deliver my order to Canada?"
    "ship": re.compile(r"\b(?:ship|shipping|deliver|delivery|send)(?:\s+[\w-]+){0,3}?\s+to\s+(?P<obj>[^?.!,;]+)", re.I),
    # a restriction: "Can I pay in dollars?" (against "We charge in euros only")
    "only": re.compile(r"\b(?:in|to)\s+(?P<obj>[^?.!,;]+)", re.I),
}
# "We charge in euros only", "... is only available in the Netherlands and Belgium"
_ONLY = [re.compile(r"^(?P<subj>.*?)\b(?:in|to)\s+(?P<items>[\w' -]+?)\s+only\b", re.I),
         re.compile(r"^(?P<subj>.*?)\b(?:is|are)?\s*only\s+(?:available\s+|possible\s+|offered\s+|sold\s+)?"
                    r"(?:in|to)\s+(?P<items>[^;:]+)$", re.I)]
_YES_NO = re.compile(r"^\s*(?:(?:hi|hello|hey)\b[,!.]?\s*)?(?:do|does|can|could|will|would|is|are|may)\b|"
                     r"\bis it possible\b", re.I)


def is_yes_no(question: str) -> bool:
    """Whether ``question`` asks yes or no ("Do you assemble furniture?", "Is it possible to ...")."""
    return bool(_YES_NO.search(question))


_DETERMINER = re.compile(r"^(?:the|a|an|my|your|our|some|any)\s+", re.I)
# a list item that stands for a whole category: whether the asked thing is in it is not read here
_CATEGORY = re.compile(r"^(?:every|all|any|most|other|many|several|some)\b", re.I)
_OBJECT_END = re.compile(r"\s+(?:if|when|because|so|please|instead|too|as well|at all|anymore|now|today|possible|"
                         r"available|allowed)\b.*$", re.I)

#: how alike (cosine of their embeddings) an asked thing and a listed one must be for the asked one
#: to be a thing of the list's kind ("Bitcoin" and "PayPal", "dollars" and "euros"; not "returns")
SAME_KIND = 0.45
#: at least this alike, it is probably one of them under another name ("the UK", "Master card")
SAME_THING = 0.8
#: below this for every listed thing, the answer to an enumeration says no ("Bitcoin"); above, the list
#: is shown without one ("Amex" is 0.65 from "American Express")
CLEARLY_OTHER = 0.55


@dataclass(frozen=True)
class Listing:
    """A KB sentence that names what is offered, and so what is not."""

    sentence: str
    items: tuple[str, ...]
    link: str  # "pay" / "ship" (a list introduced by a verb) or "only" (a restriction)
    subject: frozenset[str]  # a restriction's subject words the question must name ("large item furniture")
    open: bool  # an item is a category ("every country of the European Union")
    passage: dict[str, Any]
    then: str = ""


def _clean(phrase: str) -> str:
    phrase = _OBJECT_END.sub("", phrase.replace("**", "").strip())
    phrase = _PREPOSITION.sub("", phrase) if not _CATEGORY.match(phrase) else phrase
    while (m := _DETERMINER.match(phrase)):
        phrase = phrase[m.end():]
    return phrase.strip(" .,'\"")


def _items(text: str) -> tuple[str, ...]:
    return tuple(c for c in (_clean(i) for i in _ITEM_SPLIT.split(_CLAUSE_END.sub("", text)) if i.strip()) if c)


def listings(passages: list[dict[str, Any]]) -> list[Listing]:
    """The sentences of ``passages`` that list what is offered or restrict it with "only"."""
    out: list[Listing] = []
    for p in passages:
        for paragraph in str(p.get("text", "")).splitlines():
            sentences = _sentences(paragraph)
            for i, sentence in enumerate(sentences):
                if re.search(rf"\b{_NEG}\b", sentence, re.I):
                    continue
                body = sentence.rstrip(".!?")
                found: Listing | None = None
                if m := _LIST_OPENING.match(body):
                    group = _GROUP[m.group("verb").lower()]
                    rest = m.group("rest")
                    if group == "ship":  # the places after each "to": "... to every country of the EU, and to X"
                        parts = re.split(r"\bto\s+", rest)[1:]
                        items = tuple(x for part in parts for x in _items(re.sub(r",?\s+and\s*$", "", part)))
                    else:
                        items = _items(rest)
                    if len(items) >= 2:
                        found = Listing(sentence, items, group, frozenset(), any(_CATEGORY.match(x) for x in items), p)
                else:
                    for pattern in _ONLY:
                        if (m := pattern.match(body)) and (items := _items(m.group("items"))):
                            subject = frozenset(stems(m.group("subj"))) - _ITEM - {_key("we"), _key("is")}
                            # "We charge in euros only": a verb after "we" is optional in the question
                            if re.match(r"\s*(?:we|you)\s+\w+\s*$", m.group("subj"), re.I):
                                subject = frozenset()
                            found = Listing(sentence, items, "only", subject, False, p)
                            break
                if found is not None:
                    then = _instead(sentences[i + 1]) if i + 1 < len(sentences) else ""
                    out.append(Listing(found.sentence, found.items, found.link, found.subject, found.open,
                                       found.passage, then))
    return out


def _head(phrase: str) -> str:
    """A phrase's last content word, as :func:`stems` keys it ("Larkspur gift cards" -> "card")."""
    keys = [k for w in re.findall(r"[\w']+", same_words(phrase).replace("-", " ")) for k in stems(w)]
    return keys[-1] if keys else ""


def _asked_objects(question: str, passages: list[dict[str, Any]]) -> Iterable[tuple[Listing, list[str], set[str]]]:
    """The lists of ``passages`` a yes/no question asks about, each with the things it asks about
    ("Bitcoin"; "British pounds", "US dollars") and the question's other words."""
    if not _YES_NO.search(question):
        return
    q = stems(question) - _ASKING

    def document(listing: Listing) -> set[str]:
        return set().union(*(stems(f"{p.get('title') or ''} {p.get('heading') or ''} {p.get('text') or ''}")
                             for p in passages if p.get("document_id") == listing.passage.get("document_id")))

    for listing in sorted(listings(passages), key=lambda x: x.link == "only"):  # a list named by its verb first
        for m in _ASKING_ABOUT[listing.link].finditer(question):
            objects = [o for o in (_clean(x) for x in re.split(r"\s+(?:or|and)\s+|,\s*", m.group("obj"))) if o]
            if not objects or any(len(o.split()) > 5 for o in objects):
                continue
            rest = q - set().union(*(stems(o) for o in objects))
            if listing.link == "only":
                # the question is about what the restriction's section is about ("pay": "Paying in another
                # currency"), and names its subject ("large-item furniture delivery")
                section = stems(f"{listing.passage.get('title') or ''} {listing.passage.get('heading') or ''} "
                                f"{listing.passage.get('text') or ''}")
                # ("Do you accept payment in US dollars?": "accept" is the document's, not the section's)
                if not rest & section or not rest <= section | document(listing) or \
                        listing.subject and not _enough(len(listing.subject & q), len(listing.subject)):
                    continue
            yield listing, objects, rest


def _heads(listing: Listing) -> set[str]:
    return {_head(i) for i in listing.items} | {w for i in listing.items for w in stems(i) if len(stems(i)) == 1}


def asked_outside(question: str, passages: list[dict[str, Any]],
                  similarity: Callable[[str, list[str]], list[float]] | None) -> Limit | None:
    """A yes/no question about a thing of a listed kind the list does not name, as a :class:`Limit`.

    "Do you accept Bitcoin?" against "We accept Visa, ...": Bitcoin is not among the listed methods,
    is named nowhere in the retrieved text, and is a thing of their kind (its embedding is at least
    :data:`SAME_KIND` alike to one of them, see ``similarity``). A thing that shares a listed one's
    head word ("Visa debit", "credit card" beside "gift cards") or nearly is one ("the UK") is not
    asked about here, unless a name of its own comes with the head word ("Google Pay" beside "Apple
    Pay"): then that name must be one the retrieved text does not use. "Do you ship to Germany?" against a list with a category in it ("every country
    of the European Union") shows the list without a "no".
    """
    if similarity is None:
        return None
    # every word the retrieved text uses
    named = set().union(*(stems(f"{p.get('heading') or ''} {p.get('text') or ''}") for p in passages))
    for listing, objects, _rest in _asked_objects(question, passages):
        heads = _heads(listing)
        outside: list[tuple[str, float]] = []
        listed_words = set().union(*(stems(i) for i in listing.items))
        for obj in objects:
            words = stems(obj)
            # a name of its own beside a listed head word: "Google" in "Google Pay" (beside "Apple Pay")
            own_name = set().union(*(stems(w) for w in re.findall(r"\b[A-Z][\w'-]*", obj))) - listed_words
            if not words or (words & heads and not own_name) or \
                    (own_name & named if words & heads else _head(obj) in named):
                break  # a listed thing, or one the KB names ("credit card", "Visa debit", "Norway")
            alike = max(similarity(obj, list(listing.items)), default=0.0)
            if alike < SAME_KIND or alike >= SAME_THING:
                break
            outside.append((obj, alike))
        else:
            if outside:
                thing = frozenset().union(*(stems(o) for o, _ in outside))
                says_no = not listing.open and (listing.link == "only" or max(a for _, a in outside) < CLEARLY_OTHER)
                return Limit(listing.sentence, thing, frozenset(), listing.passage, listing.then, says_no)
    return None


# a list line about one thing: "Cards (Visa, Mastercard, American Express): charged when you place ..."
_LABELLED = re.compile(r"^(?P<label>[^:]{2,60}):\s+(?P<text>.+)$", re.S)
# the words a yes/no question about a listed thing may have besides it: "Can I pay for my order with Klarna?"
_PLAIN_ASKING = {_key(w) for w in ("pay", "payment", "order", "purchase", "accept", "take", "ship", "shipping",
                                   "deliver", "delivery", "send", "use", "online", "checkout", "parcel")}


def asked_listed(question: str, passages: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """A plain yes/no question about things a list names ("Can I pay with Klarna?", "Do you ship to
    Norway?"), as the passage and the KB's words that answer it: the line about the thing when its
    document has one ("Klarna (pay later): you receive the goods first and pay Klarna within 30
    days."), else the list's sentence. A question with more in it ("... with Klarna for a gift card?")
    is not answered by the list alone: None."""
    for listing, objects, rest in _asked_objects(question, passages):
        if rest - _PLAIN_ASKING:
            continue
        listed = [next((i for i in listing.items if stems(i) and (stems(i) <= stems(o) or stems(o) <= stems(i))), None)
                  for o in objects]
        if not objects or None in listed:
            continue
        if len(objects) == 1:
            # a list line labelled with the thing: "**Klarna (pay later):** you receive the goods first ..."
            for p, label, line in _labelled_lines(listing, passages):
                if stems(objects[0]) <= stems(label):
                    return p, line
        said = f"{listing.sentence} {listing.then}" if listing.then else listing.sentence
        return listing.passage, said
    return None


def _labelled_lines(listing: Listing, passages: list[dict[str, Any]]) -> Iterable[tuple[dict[str, Any], str, str]]:
    """The bold-labelled list lines of the listing's document: (passage, label, whole line)."""
    for p in passages:
        if p.get("document_id") != listing.passage.get("document_id"):
            continue
        # (a section's list can come with its lines joined: "... app. - **PayPal:** you are ...")
        for item in re.split(r"(?:^|\s)[-*•]\s+(?=\*\*)", str(p.get("text", ""))):
            item = item.split("\n\n")[0].replace("**", "").strip()
            if label := _LABELLED.match(item):
                yield p, label.group("label"), " ".join(item.split())


def asked_kind(question: str, passages: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """A plain yes/no question about a kind of thing the list groups under a label, by a name the list
    does not use ("Do you accept credit cards?" against "**Cards (Visa, Mastercard, American Express):**
    charged when you place the order."): the passage and that line, which says which ones there are.
    It is shown without a yes: "Maestro cards" are of the kind too, and not among them."""
    for listing, objects, rest in _asked_objects(question, passages):
        if rest - _PLAIN_ASKING or len(objects) != 1 or len(stems(objects[0])) < 2:
            continue
        if any(stems(i) and (stems(i) <= stems(objects[0]) or stems(objects[0]) <= stems(i)) for i in listing.items):
            continue  # a listed thing: asked_listed's
        for p, label, line in _labelled_lines(listing, passages):
            # the label is a group of listed things: "Cards (Visa, Mastercard, American Express)"
            group = re.match(r"(?P<kind>[^(]+)\((?P<members>[^)]+)\)\s*$", label)
            if group and _head(group.group("kind")) == _head(objects[0]) and \
                    all(stems(m) & set().union(*map(stems, listing.items)) for m in _items(group.group("members"))):
                return p, line
    return None


# "What payment methods do you accept?", "Which countries do you ship to?", "Where do you deliver?"
_WHAT_LIST = re.compile(
    r"^\s*(?:(?:hi|hello|hey)\b[,!.]?\s*)?(?:(?:what|which)\b[^?.!]{0,60}?\b(?:do|does|can|will)\s+(?:you|we|i|larkspur)"
    r"|where\s+(?:do|does|can|will)\s+(?:you|we|larkspur))\s+(?P<verb>accept|take|ship|deliver|send|pay\s+with|use)\b",
    re.I)


_LIST_TOPIC = {"pay": re.compile(r"\b(?:pay|payment|payments|methods?|cards?|currenc(?:y|ies))\b", re.I),
               "ship": re.compile(r"\b(?:where|countr(?:y|ies)|places?|destinations?|abroad|international)\b", re.I)}


def asked_for_list(question: str, passages: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """A question asking what a list holds ("What payment methods do you accept?", "Which countries do
    you ship to?"), answered by the list's sentence: the passage and the KB's words, or None."""
    m = _WHAT_LIST.match(question)
    if not m:
        return None
    verb = m.group("verb").lower().split()[0]
    group = _GROUP.get(verb, "pay" if verb in ("pay", "use") else "")
    # the question must be about what the list lists: "What returns do you accept?" and "What courier do
    # you use?" are not about payment methods, "What do you ship?" not about places
    if not _LIST_TOPIC[group].search(question):
        return None
    for listing in listings(passages):
        if listing.link == group:
            said = f"{listing.sentence} {listing.then}" if listing.then else listing.sentence
            return listing.passage, said
    return None


# "and Bitcoin?", "what about Norway?", "or with PayPal?": a follow-up that names only a thing
_FOLLOW_UP = re.compile(r"^\s*(?:and|or|also|what\s+about|how\s+about)\s+(?:(?:with|by|in|to|for|using)\s+)?"
                        r"(?P<obj>[^?.!,;]{1,40}?)\s*[?.!]*\s*$", re.I)


# the countries customers ask about deliveries to, by the names they write ("us" alone is the pronoun)
_COUNTRY = re.compile(
    r"\b(?:(?:the\s+)?netherlands|holland|" + "|".join(m.replace(" ", r"\s+") for m in EU_MEMBERS) + "|"
    r"(?:the\s+)?(?:uk|united\s+kingdom)|britain|great\s+britain|england|scotland|wales|switzerland|norway|"
    r"iceland|the\s+us|usa|(?:the\s+)?united\s+states|canada|australia|japan|china|turkey)\b", re.I)


_SHIP_FRAGMENT = re.compile(r"^\s*(?:delivery|deliveries|deliver|shipping|ship)\s+(?:to|in)\s+"
                            r"(?P<obj>[^?.!,;]{1,60}?)\s*[?.!]*\s*$", re.I)


# "how long does that take?", "how much is it?": a question for a figure that names its subject only by a pronoun
_ANAPHOR = re.compile(r"\b(?:that|it|this|those|these|they|them)\b", re.I)
# words that only say how a figure is asked for: a follow-up made of these and a pronoun has no subject of its own
_ASKING_ONLY = {stem(w) for w in ("long", "much", "many", "soon", "fast", "quickly", "late", "early", "take", "cost",
                                  "price", "fee", "charge", "usually", "normally", "typically", "roughly",
                                  "generally", "then", "will", "would", "need", "wait", "arrive", "come", "get",
                                  "and", "so", "ok", "okay", "also", "exactly", "again", "when", "which", "they",
                                  "them", "those", "these", "last", "normal")}
# how the previous question asks (kept out of the subject): "Do you deliver to Switzerland?" is about
# "deliver to Switzerland", "How much is express delivery?" about "express delivery"
_ASKING_FRAME = re.compile(
    r"^\s*(?:(?:and|so|ok(?:ay)?|also|hi|hello)[\s,!]+)?(?:(?:do|does|did|can|could|will|would|is|are|may)\s+"
    r"(?:you|i|we|it|there|they)\s+(?:still\s+|also\s+)?|how\s+(?:much|long|many|soon|fast|quickly)\s+"
    r"(?:is|are|does|do|will|would)\s+(?:it\s+)?|what(?:'s|\s+is|\s+are)\s+(?:the\s+|your\s+)?|"
    r"i\s+(?:want|would\s+like|need)\s+to\s+)", re.I)


def _referred_topic(question: str, previous: str, factual: Callable[[str], bool]) -> str | None:
    """What a figure question with only a pronoun for its subject refers to: the previous question's
    subject. "how long does that take?" after "Do you deliver to Switzerland?" asks how long delivery to
    Switzerland takes; read alone, it matched the invoice's 24 hours."""
    if not factual(question) or not _ANAPHOR.search(question) or len(question.split()) > 8:
        return None
    if not (previous.rstrip().endswith("?") or _YES_NO.search(previous) or factual(previous)):
        return None  # "hello", "my order number is 123": nothing a pronoun could stand for
    if {stem(w) for w in terms(question)} - _ASKING_ONLY:
        return None  # "how long does it take to get a refund?" names its own subject
    topic = _ASKING_FRAME.sub("", previous.strip()).strip().rstrip("?.! ")
    if not topic or len(topic.split()) > 8 or _ANAPHOR.fullmatch(topic):
        return None
    # the verb as the thing it names: "deliver to Switzerland" -> "delivery to Switzerland"
    return re.sub(r"^(?:deliver|ship)\b", lambda m: "delivery" if m.group(0).lower() == "deliver" else "shipping",
                  topic, flags=re.I)


def follow_up_question(question: str, previous: str | None,
                       factual: Callable[[str], bool] | None = None) -> str:
    """A follow-up naming only a thing, asked as the customer's previous question about a list with
    the thing in its place ("and Bitcoin?" after "Which payment methods do you accept?" is "Do you
    accept Bitcoin?"; "what about Norway?" after "Do you ship to Germany?" is "Do you ship to Norway?").
    After a question for a figure (``factual``), the follow-up is asked with it: "and for made-to-order
    furniture?" after "What is the cancellation fee?" asks "What is the cancellation fee and for
    made-to-order furniture?", which the made-to-order fee answers, not the first fee again.
    A fragment asking about delivery to a place ("Delivery to Los Angeles or Las Vegas?") is the
    question "Do you ship to Los Angeles or Las Vegas?", which the KB's list of countries answers (the
    model had written "We offer delivery services to these locations"). Any other question is returned
    as it is."""
    if f := _SHIP_FRAGMENT.match(question):
        return f"Do you ship to {f.group('obj').strip()}?"
    if previous and factual is not None and (topic := _referred_topic(question, previous, factual)):
        return _ANAPHOR.sub(topic, question, count=1)
    m = _FOLLOW_UP.match(question)
    if not m or not previous or len(m.group("obj").split()) > 4:
        return question
    thing = m.group("obj").strip()
    if _COUNTRY.fullmatch(thing) and (place := _COUNTRY.search(previous)):
        # "and to Switzerland?" after "How long does delivery to Sweden take?" asks how long delivery to
        # Switzerland takes (asked with both places, it got the EU's 4-8 days)
        return f"{previous[:place.start()]}{thing}{previous[place.end():]}"
    if w := _WHAT_LIST.match(previous):
        verb = w.group("verb").lower().split()[0]
        return f"Do you ship to {thing}?" if _GROUP.get(verb) == "ship" else f"Do you accept {thing}?"
    if _YES_NO.search(previous):
        for group in ("pay", "ship"):
            if a := _ASKING_ABOUT[group].search(previous):
                return f"{previous[:a.start('obj')]}{thing}?"
    if factual is not None and factual(previous) and not factual(question):
        return f"{previous.strip().rstrip('?.! ')} {question.strip().rstrip('?.! ')}?"
    return question


#: what a customer's account of a broken, failing or wrong item comes to (:func:`bot.conversation.words.stems`
#: reads "smashed", "cracked", "stopped working", "won't turn on", "the wrong colour" as these)
PROBLEM_WORDS = frozenset({_key("damaged"), _key("faulty"), _key("wrongitem")})
_ACCIDENT = _key("accident")  # damage the customer caused (:func:`~bot.conversation.words.problems_named`)


def reported_problem(question: str, passages: list[dict[str, Any]], products: Collection[str] = ()) -> frozenset[str]:
    """The problem ``question`` reports (damaged, faulty) when one of the two best ``passages`` speaks of it.

    "My package arrived and the vase is smashed" names a vase and a package the policy never mentions, so
    no passage uses most of its words (:func:`covers`); it is still the case the damaged-or-faulty policy is
    written for. An empty set when the message reports no such problem or the passages are about something
    else."""
    said = stems(question)
    problem = said & PROBLEM_WORDS
    # "my heart is broken" is no damaged item; "I dropped it and it cracked": what the warranty says of accidents
    # answers it
    if not problem or _ACCIDENT in said or not names_an_item(question, products):
        return frozenset()
    for p in passages[:2]:
        if found := problem & stems(f"{p.get('title') or ''} {p.get('heading') or ''} {p.get('text') or ''}"):
            return frozenset(found)
    return frozenset()


# a damaged or wrong item in the words the policy is indexed under; "faulty" is left out ("my code doesn't work"
# is no faulty item), and so is anything said about a link, a code, a page or an account ("the reset link is broken")
_SEARCH_WORDS = {_key("damaged"): "damaged item", _key("wrongitem"): "wrong item"}
_NOT_AN_ITEM = re.compile(r"\b(?:links?|codes?|web\s*sites?|sites?|pages?|app|e-?mails?|account|password|card|"
                          r"payments?|checkout|vouchers?|promo|discount|invoices?|screen|button)\b", re.I)


# a thing a problem can happen to: a message that names none ("from broken to complete") reports no item
_ITEM_WORDS = re.compile(r"\b(?:items?|orders?|ordered|parcels?|packages?|deliver(?:y|ed)|box(?:es)?|products?|"
                         r"arrived|came|received|bought|purchased?|got|sent)\b", re.I)


def names_an_item(question: str, products: Collection[str] = ()) -> bool:
    """Whether ``question`` speaks of something bought: an order, a parcel, an item, or a product the shop sells."""
    return bool(_ITEM_WORDS.search(question)) or bool(stems(question) & set(products))


def problem_search(question: str, products: Collection[str] = ()) -> str:
    """``question`` as retrieval should read it: with the policy's words for a damaged or wrong item it reports.

    "i received someone elses order" retrieved "Ordering for someone else"; with "(wrong item)" it retrieves
    the damaged-or-faulty policy's "Wrong item received". "my chair wobbles, one leg is shorter than the others"
    retrieved refund sections; with "(damaged item)" its "Report it quickly". Damage the customer caused is
    searched for as the warranty speaks of it: "i dropped my mug and it broke, can i get a new one under
    warranty" retrieved how to make a claim, and with "(damage from accidents)" what the warranty does not cover.
    """
    item = names_an_item(question, products)
    if _NOT_AN_ITEM.search(question) or not (item or "warranty" in question.lower()):
        return question
    if self_caused_damage(question):
        return f"{question} (damage from accidents)"
    said = stems(question)
    words = [_SEARCH_WORDS[w] for w in sorted(said & set(_SEARCH_WORDS))]
    if not words or _ACCIDENT in said or not item:
        return question
    return f"{question} ({', '.join(words)})"


def in_knowledge_base(question: str, passages: list[dict[str, Any]], products: Collection[str] = (),
                      similarity: Callable[[str, list[str]], list[float]] | None = None) -> bool:
    """Whether the retrieved ``passages`` answer ``question`` though the intent model called it out of
    scope: a passage uses (nearly) all its words (:func:`covers`) or speaks of the damaged or faulty item
    it reports (:func:`reported_problem`), a sentence of theirs rules out what
    it asks about ("Can I exchange an item for a different colour?": "We do not swap items directly"),
    or a list of theirs answers it ("Do you accept British pounds?" against "We charge in euros only";
    "Can I pay with Klarna?")."""
    return (covers(question, passages, products) or bool(reported_problem(question, passages, products))
            or asked_limit(question, limits(passages)) is not None
            or asked_for_list(question, passages) is not None
            or asked_listed(question, passages) is not None or asked_kind(question, passages) is not None
            or asked_outside(question, passages, similarity) is not None)


# --- a yes/no question no rule or list answers -------------------------------------------------------
#
# "Do you offer student discounts?", "Do you deliver on Sundays?": the small model says yes ("Certainly!
# We offer student discounts.") whether the policy says so or not. Such a question is answered by the KB
# sentence that names every word of what it asks about ("Can I order in the app?": "You can order on
# larkspur.example or in the Larkspur app, ..."), or, when no sentence does, by saying that the policy
# does not say: the bot cannot promise it.

# how a yes/no question asks, not what it asks about
_FRAME = {_key(w) for w in ("do", "does", "did", "can", "could", "will", "would", "is", "are", "may", "i", "we",
                             "you", "your", "our", "us", "me", "my", "there", "it", "offer", "provide", "sell",
                             "possible",
                             "available", "option", "someone", "anyone", "somebody", "ok", "okay", "allowed",
                             "really", "actually", "currently", "usually", "also", "still", "a", "an", "the",
                             "to", "for", "of", "in", "on", "with", "and", "or", "any")}
# a question about the state of the customer's own order or account ("Is my order on its way?", "Has my
# refund been paid?"): the order flow and the model answer those. "Can I pick up my order at your
# warehouse?" asks about the policy.
_OWN = re.compile(r"^\s*(?:(?:hi|hello|hey)\b[,!.]?\s*)?(?:is|are|has|have|was|were|will|did|does|do)\s+(?:my|our)\s+"
                  r"(?:order|parcel|package|refund|delivery|return|payment|account|money|item|purchase)|"
                  r"\bwhere\b[^?.!]{0,40}\bmy\b|\b(?:status|track)\b[^?.!]{0,20}\bmy\b|\d{6,}", re.I)


def asked_thing(question: str) -> frozenset[str]:
    """The words of what a yes/no question asks about ("Do you offer student discounts?": student,
    discount), or none when it is not a yes/no question about the shop's policy, or names its thing
    by one word only: "Can I get a refund?" is answered by any of a dozen sentences with "refund" in
    them, so the procedure or the model's reply stands, checked as any other."""
    if not _YES_NO.search(question) or _OWN.search(question):
        return frozenset()
    thing = frozenset(stems(question) - _ASKING - _FRAME)
    return thing if len(thing) >= 2 else frozenset()


# a pointer to another page ('(see "Gift cards")'): its words are that page's subject, not the sentence's
_SEE_ALSO = re.compile(r"\(\s*see\b[^)]*\)", re.I)
# the bold lead-in of a paragraph, as the KB writes one ("**Made-to-order furniture: 15%.** Pieces ...")
_LEAD_IN = re.compile(r"^\s*\*\*([^*]{3,80})\*\*")
# a sentence about furniture, pieces or items speaks of each of the shop's products of that kind
_KIND_OF_ITEM = _ITEM | {_key(w) for w in ("furniture", "piece", "pieces")}


def stating_sentence(question: str, passages: list[dict[str, Any]],
                     products: Collection[str] = ()) -> tuple[dict[str, Any], str] | None:
    """The first KB sentence (best-ranked passage first) that names every word of what the yes/no
    ``question`` asks about, with the sentence after it when that one goes with it.

    A sentence names a word itself or through its paragraph's bold lead-in, when it names half of them
    at least itself ("Can I cancel a made-to-order sofa for free?": "**Made-to-order furniture: 15%.**
    ... You can cancel them for free within 48 hours of ordering."; the lead-in is then quoted too). A
    heading or a title is not enough: "Can I place an order by phone?" is not answered by "Orders you
    have already placed keep the name they were placed with" under "Name and phone number". A word of the shop's
    product names counts as named by a sentence about items ("Is shipping free for sofas?": "The
    free-shipping threshold does not apply to large items."). A pointer to another page ('(see "Gift
    cards")') names nothing."""
    thing = asked_thing(question)
    if not thing:
        return None
    # a sentence naming it all itself first, wherever it is ("next business day" under "Delivery times"
    # does not answer "Can I get next-day delivery?" when a later sentence says "next-day delivery")
    for helped in (False, True):
        for p in passages:
            for paragraph in str(p.get("text", "")).splitlines():
                sentences = _sentences(paragraph)
                lead = _LEAD_IN.match(paragraph)
                around = stems(lead.group(1)) if lead else set()
                for i, sentence in enumerate(sentences):
                    words = stems(_SEE_ALSO.sub(" ", sentence))

                    def named(w: str, words: set[str] = words) -> bool:
                        return w in words or (w in products and bool(words & _KIND_OF_ITEM))

                    # every word: the one left out is often the asked action ("Can I switch off order
                    # confirmation e-mails?" is not answered by "... the link in the order confirmation e-mail")
                    own = {w for w in thing if named(w)}
                    if own == thing if not helped else (
                            2 * len(own) >= len(thing) and all(named(w, words | around) for w in thing)):
                        then = _instead(sentences[i + 1]) if i + 1 < len(sentences) else ""
                        # the lead-in it needed opens it ("Made-to-order furniture: 15%.")
                        opening = sentences[0] if helped and i > 0 else ""
                        return p, " ".join(s for s in (opening, sentence, then) if s)
    return None
    for p in passages:
        above = stems(f"{p.get('heading') or ''} {p.get('title') or ''}")
        for paragraph in str(p.get("text", "")).splitlines():
            sentences = _sentences(paragraph)
            lead = _LEAD_IN.match(paragraph)
            around = above | (stems(lead.group(1)) if lead else set())
            for i, sentence in enumerate(sentences):
                words = stems(_SEE_ALSO.sub(" ", sentence))

                def named(w: str, words: set[str] = words) -> bool:
                    return w in words or (w in products and bool(words & _KIND_OF_ITEM))

                # every word: the one left out is often the asked action ("Can I switch off order
                # confirmation e-mails?" is not answered by "... the link in the order confirmation e-mail")
                own = {w for w in thing if named(w)}
                if own == thing or (2 * len(own) >= len(thing) and all(named(w, words | around) for w in thing)):
                    then = _instead(sentences[i + 1]) if i + 1 < len(sentences) else ""
                    # the words it stands under, when it needs them, open it ("Made-to-order furniture: 15%.")
                    opening = sentences[0] if lead and i > 0 and not all(named(w, words | above) for w in thing) else ""
                    return p, " ".join(s for s in (opening, sentence, then) if s)
    return None


def titled_after(question: str, passage: dict[str, Any]) -> bool:
    """Whether the heading and title of ``passage`` name half of what the yes/no ``question`` asks
    about at least: after "I can't find a clear answer", the newsletter's page is worth quoting for
    "Is the newsletter free?", the first page retrieved for "Do you deliver on Sundays?" ("Nobody
    home?") is not."""
    thing = asked_thing(question)
    named = thing & stems(f"{passage.get('heading') or ''} {passage.get('title') or ''}")
    return bool(thing) and 2 * len(named) >= len(thing)
