"""Guardrails: facts come only from the knowledge base.

The model writes company facts as ``{{Slot Name}}`` placeholders; :class:`Grounder` fills them
from the KB facts in force now, drops sentences whose slots cannot be resolved, and checks
that every concrete claim (money, duration, percentage, phone number, e-mail, URL, time of
day) is backed by a retrieved fact or passage. Unbacked sentences never reach the customer.
The check works sentence by sentence so it can sit inside a token stream.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.conversation.limits import Limit, contradicts
from bot.conversation.words import stems as _word_stems

SLOT_RE = re.compile(r"\{\{\s*([^{}]{1,80}?)\s*\}\}")
# "or through the {{Live Chat}} on our website": the customer is in the chat already; a person is one message
# away here ("here in this chat"), not behind a button on a page they are on
_IN_THIS_CHAT = re.compile(
    r"\b(?:via|through|using|on|in|with)\s+(?:our\s+|the\s+)?(?:convenient\s+|24/7\s+)?"
    r"\{\{\s*(?:live\s+chat|chat)(?:\s+anonymized)?\s*\}\}(?:\s+(?:service|support|feature|option|function))?"
    r"(?:\s+(?:on|at)\s+(?:(?:our|the)\s+(?:website|site)|\{\{[^}]*\}\}))?", re.I)
# a placeholder written in square brackets: two to six capitalised words, not a Markdown link's text
_BRACKET_SLOT = re.compile(r"(?<!\[)\[((?:[A-Z][\w'-]*)(?: [A-Z][\w'-]*){1,5})\](?![(\[])")
# Slots that stand for the customer's own data; they are filled from the conversation or
# replaced with a neutral phrase, never looked up in the KB.
CUSTOMER_SLOTS = {
    "order number": "your order",
    "order number anonymized": "your order",
    "order id anonymized": "your order",
    "purchase id anonymized": "your order",
    "purchase number": "your order",
    "bill number anonymized": "your invoice",
    "invoice number": "your invoice",
    "client name": "",
    "customer name": "",
    "name": "",
    "customer email": "your e-mail address",
    "email address": "your e-mail address",
    "customer phone": "your phone number",
    # what models/pii.py scrubs into these two
    "customer address": "your address",
    "date of birth": "your date of birth",
    "card number": "your card",
    "card security code": "your card's security code",
    "account type": "your account",
    "account category": "your account",
    "person name": "",
    "purchase number anonymized": "your order",
    "tracking number": "your tracking code",
    "invoice number anonymized": "your invoice",
    "name field anonymized": "",
    "client first name": "",
    "client last name": "",
    "purchase date anonymized": "the order date",
    "payment method anonymized": "your payment method",
    "claim details": "the details of your claim",
}

_CLAIM_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("url", re.compile(r"\b(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|example|shop|store|io)\b", re.I)),
    ("phone", re.compile(r"(?:\+\d[\d\s().-]{6,}\d|\b\d{3,4}[\s.-]\d{3,4}[\s.-]?\d{2,4}\b)")),
    ("money", re.compile(r"(?:[€$£]\s?\d+(?:[.,]\d{1,2})?|\b\d+(?:[.,]\d{1,2})?\s?(?:EUR|USD|GBP|euros?|dollars?)\b)", re.I)),
    ("percent", re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:%|percent\b)", re.I)),
    ("duration", re.compile(
        r"\b(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fourteen|"
        r"fifteen|twenty|thirty|sixty|ninety)(?:\s?(?:-|to|–)\s?\d+)?[\s-]?(?:business[\s-]|working[\s-]|calendar[\s-])?"
        r"(?:minutes?|hours?|days?|weeks?|months?|years?)\b", re.I)),
    ("time", re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm)\b|\b\d{1,2}:\d{2}\b", re.I)),
    # An order, account or reference number ("order number 123456789", "LK-20261234"): it must be one
    # the conversation or the knowledge base gave, never one the model made up.
    ("identifier", re.compile(r"\b(?:[A-Z]{2,5}-?)?\d{6,}\b", re.I)),
    # A bare number stated as an amount of money ("orders with a value of 100 or more", "spend 50"):
    # the small model drops the currency sign, and the number must still be one the KB states as money.
    ("amount", re.compile(
        r"\b(?:value|total|spend|spending|worth)\s(?:of\s|over\s|above\s|from\s|at least\s|more than\s|"
        r"under\s|below\s)?\d+(?:[.,]\d{1,2})?\b(?![.,]\d|\s?(?:%|percent|days?|weeks?|months?|years?|hours?|"
        r"minutes?|items?|pieces?|points?|[€$£]|eur|usd|gbp|euros?|dollars?)\b)", re.I)),
]
_CLAIM_BY_KIND = dict(_CLAIM_PATTERNS)
# bold in Markdown, shown to the customer without its marks
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
# Markdown emphasis the model writes around a figure ("**72** days", "*€5*")
_EMPHASIS = re.compile(r"\*{1,3}|(?<!\w)_{1,2}|_{1,2}(?!\w)")
#: claims checked as whole strings against the evidence, not by their numbers
_CONTACT_KINDS = ("email", "url", "phone")
#: claims whose number must appear in the evidence *as the same kind* (money as money, a percentage
#: as a percentage): "100 % refund" in a policy does not back "free from an order value of 100"
_KIND_EVIDENCE = {"money": "money", "amount": "money", "percent": "percent", "duration": "duration",
                  "time": "time"}
# A price stated per unit ("€45 per order") says what it is charged for. When the evidence states an
# amount per some unit, a reply must charge that amount per the same unit ("€45 per item" is a
# different, bigger promise). An amount the evidence never states per unit is not checked this way.
_RATE_RE = re.compile(
    r"([€$£]\s?\d+(?:[.,]\d{1,2})?|\b\d+(?:[.,]\d{1,2})?\s?(?:EUR|USD|GBP|euros?|dollars?))\s+"
    r"(?:per|for each|each)\s+(?:(?:large|small|extra|additional|single|individual)\s+)?"
    r"(order|item|parcel|package|shipment|delivery|piece|product|article|box|basket|month|year|week|day|"
    r"hour|person|customer|address)(?:s|es)?\b", re.I)
_PROMISE_RE = re.compile(
    r"\b(?:i|we)\s(?:will|'ll|can|shall)\s(?:personally\s)?(?:guarantee|promise|waive|refund you in full|"
    r"give you (?:a )?(?:full|free|complete)|make an exception)|\bguarantee(?:d)?\b|\bpromise\b|"
    r"\bfull refund\b(?!\s(?:history|status|policy|page|requests?|process|form|section|tab|option|button))|\bfree of charge\b|\bwaive(?:d)?\b|\blifetime\b|\bunlimited\b|\bforever\b|"
    r"\bno (?:fee|charge|cost)s?\b|\bexception\b|"
    # something handed over for nothing, unless the policy says it in these words ("a free return label")
    r"\bfree (?:replacement|repair|refund|upgrade|gift|item|product|order)s?\b|"
    # the money back in full, or a team that never sleeps: only in the policy's own words
    r"\brefund(?:s|ed)?(?: you)? (?:in full|the (?:full|whole|entire|complete) (?:amount|price|cost|purchase price|order))\b|"
    r"\bfully refund(?:s|ed)?\b|\bmoney back in full\b|"
    r"\baround the clock\b|\b24/7\b|\b24 hours a day\b|\bday and night\b", re.I)
# the money back in full, however it is said (a promise the policy must make in one of these ways too)
_FULL_REFUND = re.compile(
    r"\bfull refund\b|\brefund(?:s|ed)?(?: you)? (?:in full|the (?:full|whole|entire|complete) "
    r"(?:amount|price|cost|purchase price|order))\b|\bfully refund(?:s|ed)?\b|\bmoney back in full\b|"
    r"\brefunded in full\b|\b100 ?% refund", re.I)
# "by calling care@larkspur.example": an e-mail address is not called
_CALLED_EMAIL = re.compile(r"\b(?:call|calling|phone|phoning|ring)\s+(?:us\s+|them\s+)?(?:at\s+|on\s+)?[\w.+-]+@", re.I)
# Something handed to the customer ("To ensure you receive your coupon, ...", "to provide you with the
# correct voucher code"): only what the policy itself hands out (a Circle member's birthday voucher).
_GRANTED_RE = re.compile(
    r"\b(?:receive|receives|get|gets|provide you with|send you|issue you|issue|offer you|give you|gives you)\s+"
    r"(?:a|an|your|the|one)?\s*(?:(?:correct|new)\s+)?(?P<kind>(?:free|special|personal|birthday)\s+)?"
    r"(?P<noun>coupon|voucher|discount|promo code|compensation|credit|replacement|gift card)s?\b", re.I)


_WANTED = re.compile(r"\b(?:like|want|wish|hoping|hope|asked|asking|request(?:ing)?)\s+(?:to\s+)?$", re.I)


def _grants(text: str) -> list[str]:
    """What ``text`` hands out, with its kind ("birthday voucher", "coupon"); the customer's wish said
    back ("you would like to receive a voucher") hands out nothing."""
    return [" ".join((m.group("kind") or "").split() + [m.group("noun").lower()]).lower()
            for m in _GRANTED_RE.finditer(text) if not _WANTED.search(text[max(0, m.start() - 25):m.start()])]
# A policy question ("How much is the cancellation fee?") needs no order number: the KB answers it for
# everyone. The small model, trained on tickets that nearly always ask for one, still writes "could you
# provide your order number or any other relevant details?" and then what it will do "with this
# information". When the caller says the question needs no details, those sentences are dropped.
_DETAILS_REQUEST = re.compile(
    r"(?:\b(?:could you|can you|would you|please|kindly|request(?:ing)? (?:that )?you|ask(?:ing)? you|need you|"
    r"if you (?:could|can))\b[^.?!]{0,30}?|^(?:[-*•]\s*|\d{1,2}[.)]\s*)?)\b(?:provide|share|give|send|tell)\b[^.?!]{0,60}?\b(?:order (?:number|id|details)|"
    r"account (?:number|details)|details|contact details|your name|e-?mail address|shipping address|"
    r"specific issue)\b", re.I)
_DETAILS_FOLLOW_UP = re.compile(
    r"^(?:with (?:this|these|that) (?:information|details)|once i (?:have|receive)|this will (?:allow|enable|help)|"
    r"thank you for your (?:cooperation|patience|understanding)|by providing)", re.I)
# "You can cancel it for free": a price of nothing, stated without a figure the guardrail could check
_FREE_CLAIM = re.compile(
    r"\b(?:for free|free of charge|at no (?:extra |additional )?(?:cost|charge)|"
    r"no (?:extra |additional )?(?:fee|charge|cost)s?\b(?! (?:information|details))|without (?:any )?(?:fee|charge|cost)s?|"
    r"(?:is|are|it's|that's) (?:completely |totally |always )?free\b(?! (?:from|above|over|for orders|to ask))|"
    r"(?:we|they) (?:do not|don't|will not|won't) charge)", re.I)
# "call our toll-free number": a price for the call (nothing), stated without a figure to check; the
# sample company's calls "cost your normal national rate"
_TOLL_FREE = re.compile(r"\btoll[- ]?free\b|\bfree[- ]?phone\b|\bfree(?: of charge)? (?:phone |telephone )?"
                        r"(?:number|call|hotline|line)s?\b|\bfree to call\b|"
                        r"\bcall(?:ing)? (?:us |them )?(?:for free|free of charge|at no (?:extra )?cost)\b|"
                        r"\bcalls?\b[^.!?]{0,40}?\b(?:are|is) free\b|\bcalls?\b[^.!?]{0,40}?\bcosts? nothing\b", re.I)
_HOURS_VALUE = re.compile(r"\b\d{1,2}:\d{2}\b|\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s")
# why a numbered step the model wrote is not shown (a fact question, or a how-to question the KB
# documents no procedure for: the steps would be the model's own)
STEP_DROPPED = "a step the retrieved policy does not document"
# why a sentence that says yes to what the policy rules out is not shown
RULED_OUT = "says the opposite of the policy"
UNBACKED_YES = "says yes to what the question asks, which the policy does not say"
STEPS_LEAD_DROPPED = "introduces steps the retrieved policy does not document"
# why a model sentence is not shown beside the policy's own answer (its procedure, its paragraph, its
# "no"): the model wrote the reply without it ("We have a cancellation policy in place to ensure that you
# can easily cancel your order" after "A shipped order can no longer be cancelled"; "Simply enter your
# gift card number" after the KB's steps for buying one)
BESIDE_KB_ANSWER = "adds to the policy's own answer what the policy does not say"
# what may stand beside it: the customer's request said back, an apology, an offer of more help
_BESIDE_KB_KEPT = re.compile(
    r"^(?:i|we)\s+(?:(?:completely|fully|totally)\s+)?(?:understand|apologi[sz]e|appreciate|realise|realize|hear)\b|"
    r"^(?:i'm|i am|we're|we are)\s+(?:so\s+|very\s+|truly\s+)?sorry\b|^(?:sorry|thank you|thanks)\b|"
    r"\b(?:support team|customer (?:service|support|care)(?: team)?|reach (?:out|them|us)|contact (?:us|them|our)|"
    r"get in touch|(?:here|available|happy|glad) to (?:help|assist)|don'?t hesitate|do not hesitate|"
    r"further (?:questions|assistance|help)|any (?:other |more |further |additional )?questions|let (?:me|us) know|"
    r"anything else|just ask|feel free|(?:here|there) for you)\b",
    re.I)
# "Here's what you can do:" / "please follow these steps:" opens a list of steps
_STEPS_LEAD = re.compile(r"\b(?:steps?|here(?:'s| is) (?:what|how)|what you (?:can|need to|should) do|follow|"
                         r"how to|instructions)\b", re.I)
# A name the model brings in that neither the policy nor the customer used ("we ship to the UK, Germany
# and Italy", "pay with PayPal") is a claim about the company like a figure is. Capitalised words that
# do not open a sentence, a list item, a quote or a clause after a colon count as names.
_NAME_TOKEN = re.compile(r"[A-Za-z][A-Za-z’'-]*|[.!?:;\"“”(•*]|\d+")
_NAME_BREAK = {".", "!", "?", ":", "\"", "“", "(", "•", "*"}
_COMMON_CAPITALS = {"i", "i'm", "i'll", "i've", "i'd", "ok", "monday", "tuesday", "wednesday", "thursday", "friday",
                    "saturday", "sunday", "january", "february", "march", "april", "may", "june", "july", "august",
                    "september", "october", "november", "december"}


def _names(sentence: str) -> list[str]:
    """The capitalised words in ``sentence`` that are not capitalised only by their place."""
    tokens = _NAME_TOKEN.findall(re.sub(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+", "", sentence))
    found = []
    for i, token in enumerate(tokens):
        if i and token[0].isupper() and tokens[i - 1] not in _NAME_BREAK:
            word = re.sub(r"[’']s$", "", token).lower()  # "Klarna's" is Klarna
            if word not in _COMMON_CAPITALS:
                found.append(word)
    return found


# a slot's value with its unit ("14 days", "2-4 business days"); the number alone is group 1
_VALUE_UNIT = re.compile(r"^(\d[\d.,]*(?:\s*[-–]\s*\d[\d.,]*)?)\s+([a-z][a-z ]*)$")


def _unit_forms(unit: str) -> str:
    """An alternation of a unit's words, singular and plural ("business days" -> business|days|day|...)."""
    forms = set()
    for word in unit.split():
        forms |= {word, word.rstrip("s"), word.rstrip("s") + "s"}
        if word == "business":
            forms |= {"working", "work"}
        if word.rstrip("s") == "day":
            forms |= {"business", "working", "calendar"}  # "{{Grace Period}} business days" for "30 days"
    return "|".join(sorted(forms, key=len, reverse=True))
# units a reply writes after a figure; one of them after a filled value with a unit of its own is a mismatch
_UNIT_WORDS = ("(?:business |working |calendar )?days?|weeks?|months?|years?|hours?|minutes?|characters?|"
               "items?|points?|percent|times|euros?|kg|cm")
_WORDNUM = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
            "eight": "8", "nine": "9", "ten": "10", "twelve": "12", "fourteen": "14", "fifteen": "15",
            "twenty": "20", "thirty": "30", "sixty": "60", "ninety": "90"}
# Procedures are facts too. The knowledge base names screen elements exactly: in bold
# (**Cancel order**), as the levels of a "›" path (My Account › Orders) or in quotes. A step in a
# reply that names a section, page, button or menu must name one of those.
_UI_NOUN = r"(?:section|page|tab|button|menu|option|link|area|screen|panel|field|box)s?"
_STEP_VERBS = r"navigate|go to|head to|click|tap|press|select|choose|open|look for|find|visit|log ?in|sign in|scroll|enter"
_STEP_VERB_RE = re.compile(rf"\b(?:{_STEP_VERBS}|check|use|locate|access|view|see)\b", re.IGNORECASE)
_STEP_RE = re.compile(rf"\b(?:{_STEP_VERBS}|{_UI_NOUN})\b", re.IGNORECASE)
_UI_QUOTED = re.compile(r"[\"“]([^\"“”\n]{1,40})[\"”]")
_UI_CAP = r"[A-Z][\w&'/-]*"
_UI_NAMED = re.compile(rf"((?:{_UI_CAP}\s+){{0,3}}{_UI_CAP}(?:\s+or\s+(?:{_UI_CAP}\s+){{0,3}}{_UI_CAP})?)\s+{_UI_NOUN}\b")
# words a capitalised run may start with that are not part of a screen's name ("Select Orders tab")
_UI_LEAD = re.compile(
    r"^(?:(?:then|and|please|the|our|your|a|an|this|that|click|tap|press|select|choose|open|visit|find|use|"
    r"on|to|in)\b\s*)+", re.IGNORECASE)
_EVIDENCE_UI = re.compile(r"\*\*([^*\n]{1,80})\*\*|[\"“]([^\"“”\n]{1,80})[\"”]|([^.\n]{0,80}›[^.\n]{0,80})")


def _bold_label(bold: str | None) -> bool:
    """Bold text that names no screen: a list's label ("**PayPal:**") or a list of names ("**Visa,
    Mastercard, PayPal**"). "Go to the PayPal section" is not backed by either."""
    return bool(bold) and (bold.rstrip().endswith(":") or "," in bold)  # type: ignore[union-attr]


# A screen named in lower case ("go to the order details section") is checked like a capitalised one,
# unless its words only say which one without naming it ("the relevant section", "the top of the page").
_UI_LOWER = re.compile(rf"\b(?:the|your|our)\s+((?:[a-z][\w&'/-]*\s+){{1,3}}){_UI_NOUN}\b")
_UI_GENERIC = {
    "relevant", "appropriate", "specific", "same", "next", "previous", "main", "following", "right", "correct",
    "respective", "dedicated", "designated", "corresponding", "bottom", "top", "home", "new", "above", "below",
    "specified", "required", "necessary", "desired", "available", "official", "first", "last", "other", "given",
    "mentioned", "provided", "said", "contact", "help", "support", "web", "website", "online", "app", "account",
}
_UI_FUNCTION = {"of", "the", "to", "in", "on", "for", "and", "or", "a", "an", "at", "from", "with", "by", "into",
                "onto", "under", "our", "your", "its", "their", "this", "that"}
# A figure filled in where a step names a screen ("Look for the {{Gift Card Validity}} section", "Click on
# {{Support Phone}}") is a slot used as the wrong kind of thing: "the 5 section" names nothing.
_SLOT_AS_SCREEN = re.compile(
    rf"(?:\b(?:click|tap|press|select|choose|open|go to|navigate to|head to|look for|locate|find)\s+(?:on\s+)?"
    rf"(?:the\s+|our\s+|your\s+)?(?P<after>\{{\{{[^{{}}]+\}}\}})|(?P<before>\{{\{{[^{{}}]+\}}\}})"
    rf"(?:\s+or\s+(?P<alt>\{{\{{[^{{}}]+\}}\}}))?\s+{_UI_NOUN}\b)", re.IGNORECASE)


def _ui_key(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def _ui_names(sentence: str) -> tuple[list[str], list[str]]:
    """Screen elements a step sentence names (slots removed first: those are KB-backed).

    Two lists: names marked as names (capitalised or quoted), which the procedure must name too, and
    names in lower case ("go to the order details section"), which the retrieved text must at least use.
    """
    text = SLOT_RE.sub(" ", sentence)
    if not _STEP_RE.search(text):
        return [], []
    marked = [m.group(1) for m in _UI_QUOTED.finditer(text) if len(m.group(1).split()) <= 4]
    for m in _UI_NAMED.finditer(text):
        marked += [_UI_LEAD.sub("", part) for part in re.split(r"\s+or\s+", m.group(1))]
    plain = []
    # a name in lower case counts only in a sentence that tells the customer to do something there:
    # "a delay in the reset link" names no screen to go to
    for m in _UI_LOWER.finditer(text) if _STEP_VERB_RE.search(text) else ():
        words = m.group(1).split()
        # only the words right before the noun name it: "the instructions on the screen" names no screen
        while any(w in _UI_FUNCTION for w in words):
            words = words[next(i for i, w in enumerate(words) if w in _UI_FUNCTION) + 1:]
        if words and not set(words) <= _UI_GENERIC:
            plain.append(" ".join(words))
    return [n for n in map(_ui_key, marked) if n], [n for n in map(_ui_key, plain) if n]


def _figure_as_screen(sentence: str, filled: dict[str, str]) -> str | None:
    """The figure a step uses as a screen's name ("Look for the {{Gift Card Validity}} section"), if any."""
    for m in _SLOT_AS_SCREEN.finditer(sentence):
        for slot in filter(None, (m.group("after"), m.group("before"), m.group("alt"))):
            value = filled.get(SLOT_RE.match(slot).group(1), "")  # type: ignore[union-attr]
            if re.search(r"[\d@]", value):
                return value
    return None


def _sentence_key(text: str) -> str:
    """A sentence's words, for spotting one the model repeats ("If you cancel it, ... ." nine times)."""
    return " ".join(re.findall(r"[a-z0-9€%@]+", _STEP_NUMBER.sub("", text, count=1).lower()))


_STEP_NUMBER = re.compile(r"(\d{1,2})\.(?=\s)")
_SENTENCE_END = re.compile(r"(?<!\b[A-Za-z])[.!?](?=\s)|\n")
_LIST_NUMBER_BEFORE = re.compile(r"(?:^\s*|:\s+)\d{1,2}$")


def _sentence_end(buffer: str) -> re.Match[str] | None:
    """Where the first sentence of ``buffer`` (which starts a sentence) ends, or None if it has not.

    A period after a number ends a sentence ("It costs €60. Gift cards..."), except the period of
    a list number: one that opens the sentence ("2. Open Help") or follows a colon ("Here is how:
    1. Log in"), which belongs to the step.
    """
    for m in _SENTENCE_END.finditer(buffer):
        if m.group(0) == "." and _LIST_NUMBER_BEFORE.search(buffer, 0, m.start()):
            continue
        return m
    return None


def _rates(text: str) -> list[tuple[str, str]]:
    """Amounts charged per unit in ``text``: "€45 per large item" -> [("45", "item")]."""
    out = []
    for m in _RATE_RE.finditer(text):
        number = re.search(r"\d+(?:[.,]\d{1,2})?", m.group(1)).group(0).replace(",", ".")  # type: ignore[union-attr]
        if "." in number:
            number = number.rstrip("0").rstrip(".")  # "45.00" and "45" are the same amount
        out.append((number, m.group(2).lower()))
    return out


_LABEL_BEFORE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])?\s*$")
_LABEL_AFTER = re.compile(r"\s*:(?!//)")


def _is_label(sentence: str, match: re.Match[str]) -> bool:
    """Whether the slot ``match`` opens a list line as its label ("- {{Return Window}}: ...")."""
    return bool(_LABEL_BEFORE.match(sentence[: match.start()]) and _LABEL_AFTER.match(sentence, match.end()))


def slot_key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower())


def _norm(text: str) -> str:
    text = text.lower()
    for word, digit in _WORDNUM.items():
        text = re.sub(rf"\b{word}\b", digit, text)
    return re.sub(r"[\s().,-]+", "", text)


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:[.,]\d+)?", _norm_words(text)))


def _norm_words(text: str) -> str:
    out = text.lower()
    for word, digit in _WORDNUM.items():
        out = re.sub(rf"\b{word}\b", digit, out)
    return out


@dataclass
class Claim:
    kind: str
    text: str
    backed: bool


@dataclass
class SentenceCheck:
    original: str
    text: str
    kept: bool
    reason: str | None = None
    claims: list[Claim] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)


@dataclass
class GroundingReport:
    """What the guardrail did to one reply (stored with the message)."""

    verdict: str = "pass"  # pass | repaired | fallback
    sentences: list[SentenceCheck] = field(default_factory=list)
    unresolved_slots: list[str] = field(default_factory=list)
    unbacked_claims: list[str] = field(default_factory=list)
    filled_slots: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "dropped": [s.original for s in self.sentences if not s.kept],
            "unresolved_slots": sorted(set(self.unresolved_slots)),
            "unbacked_claims": self.unbacked_claims,
            "filled_slots": self.filled_slots,
        }


class Grounder:
    """Fills placeholders and checks claims for one reply.

    ``resolve_slot(name) -> str | None`` returns the current KB value for a slot;
    ``evidence`` is the text the reply may rely on (retrieved passages and fact values);
    ``customer_values`` fills customer-data slots (e.g. the order number the customer gave);
    ``conversation`` is what was said in this conversation. It backs only identifiers (an order number
    the customer typed), never a policy claim ("you promised 90 days" backs nothing).
    ``needs_no_details``: the question is one the KB answers for everyone, so a sentence asking for an
    order number or other details, and what follows from it ("With this information, ..."), is dropped.
    ``charges``: the amounts the question asks about ("€9.00" for "is there a fee to cancel?"). A
    sentence that calls the thing free without a figure of its own ("You can cancel it for free.")
    contradicts them and is dropped; the responder states the current charge.
    ``steps``: False when the question asks for a fact, not for a way to do something ("How long is
    the warranty?"), or asks how to do something the knowledge base documents no procedure for (or
    one the responder shows itself). The small model, trained on tickets that mostly walk through screens, still
    answers with numbered steps ("1. Visit our website. 2. Enter your gift card number."), most of
    them made up; without a figure of their own they are dropped, with the line that introduces them.
    A sentence that names a country, carrier, brand or other proper name that neither the evidence
    nor the conversation contains is dropped.
    A slot whose KB value has a unit ("14 days") is filled with the value and its unit, and the unit
    words the reply writes after it are dropped ("{{Pay Later Period}} business days" reads "14 days");
    before "-day" it is the number alone ("a 14-day term").
    ``limits``: what the retrieved policy rules out ("We do not accept cheques"); a sentence saying the
    opposite ("We accept cheques.") is dropped. ``asked_limit``: the one the customer asked about; then
    the model's bare yes ("Certainly!") and any unqualified sentence naming the thing go too
    (see :mod:`bot.conversation.limits`).
    ``asked_values``: the values of the facts the customer asked for ("1 business day"); an unnamed
    figure of the same kind that is none of them is dropped (:meth:`_off_answer`).
    ``kb_answer``: the reply's answer is the policy's own text (its procedure, its paragraph or its "no",
    placed by the responder); the model's other sentences then go, but for an apology, the customer's
    request said back and an offer of more help (``BESIDE_KB_ANSWER``). A question about a ruled-out
    thing is always answered so.
    ``facts``: the facts in force, as (placeholder names, value). A sentence that names one of them by
    every word of a placeholder ("the standard delivery price") and states one figure of that fact's
    kind must state that fact's value: "the standard delivery price is €14.95" (next-day's price, a
    real figure of the evidence) is dropped.
    """

    def __init__(
        self,
        resolve_slot: Callable[[str], str | None],
        evidence: Iterable[str],
        customer_values: dict[str, str] | None = None,
        conversation: Iterable[str] = (),
        needs_no_details: bool = False,
        charges: Iterable[str] = (),
        steps: bool = True,
        limits: Iterable[Limit] = (),
        asked_limit: Limit | None = None,
        facts: Iterable[tuple[Iterable[str], str]] = (),
        kb_answer: bool = False,
        asked_values: Iterable[str] = (),
        unbacked_yes: frozenset[str] = frozenset(),
    ) -> None:
        self.resolve_slot = resolve_slot
        # each fact's names (its placeholders, as words) and its current value with its unit
        self._named_facts = [([frozenset(_word_stems(n)) for n in names if len(_word_stems(n)) >= 2], str(value))
                             for names, value in facts]
        self.limits = list(limits)
        self.asked_limit = asked_limit
        self.kb_answer = kb_answer or asked_limit is not None
        # what a yes/no question asks about, when nothing in the policy says yes to it: the model's yes
        # to it goes ("Absolutely! We offer a warranty on our lamps.")
        self._unbacked_yes = Limit("", unbacked_yes, frozenset(), {}) if unbacked_yes else None
        self._asked_values = [str(v) for v in asked_values]
        self.steps = steps
        self._drop_line = False  # the rest of a dropped step's line goes with it
        self.needs_no_details = needs_no_details
        self.charges = [str(c) for c in charges]
        self._asked_details = False
        self._details_list = False  # the dropped request introduced a list of the details it wants
        evidence_items = [str(e) for e in evidence]
        self._granted = set(_grants(" ".join(evidence_items)))  # what the policy itself hands out
        # what else an identifier may repeat: the customer's own order number, said or looked up
        # normalised texts are joined with "|" so that two numbers never run into one
        self._conversation_norm = "|".join(_norm(str(t)) for t in [*conversation,
                                                                   *(customer_values or {}).values()])
        self.evidence_text = "\n".join(evidence_items)
        self._conversation_text = " ".join(str(t) for t in [*conversation, *(customer_values or {}).values()]).lower()
        self._evidence_norm = "|".join(_norm(item) for item in evidence_items)
        self._evidence_numbers = _numbers(self.evidence_text)
        self._kind_numbers: dict[str, set[str]] = {k: set() for k in set(_KIND_EVIDENCE.values())}
        self._rates: dict[str, set[str]] = {}  # amount -> the units the evidence charges it per
        for item in evidence_items:
            self._index_kinds(item)
        self.customer_values = {slot_key(k): v for k, v in (customer_values or {}).items()}
        self._ui_evidence = " | ".join(
            _ui_key(next(g for g in m.groups() if g)) for m in _EVIDENCE_UI.finditer(self.evidence_text)
            if not _bold_label(m.group(1))
        )
        self.report = GroundingReport()
        # numbered steps: the last number read and the last written (renumbered past dropped steps)
        self._step_in = 0
        self._step_out = 0
        self._after_drop = False
        self._line_open = False  # the last text shown did not end its line
        self._trailing_newlines = 0  # line breaks at the end of the text shown so far
        self._said: set[str] = set()  # the sentences kept so far (their words)
        # a kept line ending in ":" waits for what follows: shown with its list, or dropped when its
        # list items were dropped and something else comes next ("the following information:" + nothing)
        self._held: str | None = None
        self._held_check: SentenceCheck | None = None
        self._held_lost_items = False

    # -- single sentence ---------------------------------------------------------
    def check_sentence(self, sentence: str) -> SentenceCheck:
        check = SentenceCheck(original=sentence, text=sentence, kept=True)
        # "[Customer Support Phone Number]": a placeholder in the tickets' other style is a slot too; the live
        # chat the customer is in is "this chat"
        text = _IN_THIS_CHAT.sub("here in this chat", _BRACKET_SLOT.sub(r"{{\1}}", sentence))

        filled: dict[str, str] = {}  # slot name -> the value it stands for (customer's or KB's)

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            key = slot_key(name)
            check.slots.append(name)
            # "- {{Cancellation Fee}}: {{Cancellation Fee}} per order." uses the slot as its line's label. A
            # figure as a label ("- €9.00: €9.00 per order.") does not say what the figure is; the
            # fact's name does ("- Cancellation Fee: €9.00 per order."). A screen path stays a path.
            label = _is_label(sentence, match)
            if key in self.customer_values:
                value = filled[name] = self.customer_values[key]
                return name if label and re.search(r"\d", value) else value
            value = self.resolve_slot(name)
            if value is not None:
                unit = _VALUE_UNIT.match(value)
                if unit and re.match(rf"\s*-\s*(?:{_unit_forms(unit.group(2))})\b", match.string[match.end():], re.I):
                    value = unit.group(1)  # "a {{Pay Later Period}}-day term" -> "a 14-day term"
                elif unit:
                    with_unit.add(value)  # the unit words the reply writes after it go (see below)
                filled[name] = value
                if label and re.search(r"\d", value):
                    return name
                self.report.filled_slots[name] = value
                self._add_evidence(value)
                return value
            if key in CUSTOMER_SLOTS:
                return CUSTOMER_SLOTS[key]
            self.report.unresolved_slots.append(name)
            check.kept = False
            check.reason = f"unresolved slot {name!r}"
            return match.group(0)

        with_unit: set[str] = set()
        text = SLOT_RE.sub(fill, text)
        for value in with_unit:
            # the KB's unit stands; the reply's own after it goes: "{{Pay Later Period}} days" and
            # "{{Pay Later Period}} business days" both read "14 days" when the policy says 14 days
            forms = _unit_forms(_VALUE_UNIT.match(value).group(2))  # type: ignore[union-attr]
            text = re.sub(rf"(?<={re.escape(value)})(?:\s+(?:{forms})\b)+", "", text, flags=re.I)
            # a unit of another kind after it: the slot names another fact ("for {{Minimum Password
            # Length}} weeks" read "for 10 characters weeks")
            other = re.search(rf"(?<={re.escape(value)})\s+({_UNIT_WORDS})\b", text, re.I)
            if other and check.kept:
                check.kept = False
                check.reason = f"fills {value!r} where the reply counts {other.group(1)}"
        for value in set(filter(None, filled.values())) - with_unit:
            # a sum or a share where the reply counts time: "within {{Refund Amount}} days" read "within 100% days"
            if re.search(r"[€$£%]", value) and check.kept and (
                    other := re.search(rf"(?<={re.escape(value)})\s+({_UNIT_WORDS})\b", text, re.I)):
                check.kept = False
                check.reason = f"fills {value!r} where the reply counts {other.group(1)}"
        for value in set(filter(None, filled.values())):
            v = re.escape(value)
            # two slots that name the same thing: "the Help › Contact us or Help › Contact us section"
            # or written twice in a row: "In both countries: €14.95 €14.95"
            text = re.sub(rf"{v}(?:\s*(?:\s(?:or|and)\s|/|\s)\s*{v})+", lambda _m, v=value: v, text)
            # a contact where the hours go, and the hours where a contact goes, read right with the
            # preposition mended: "available +31 20 ..." -> "available at +31 20 ...",
            # "reached at Monday to Saturday, ..." -> "reached Monday to Saturday, ..."
            if any(p.search(value) for kind, p in _CLAIM_PATTERNS if kind in ("email", "phone")):
                text = re.sub(rf"\bavailable (?={v})", "available at ", text)
            if _HOURS_VALUE.search(value):
                text = re.sub(rf"\b(reached|contacted|reach (?:us|them)) (?:at|on|via) (?={v})", r"\1 ", text)
        if "{{" in text or "}}" in text:
            check.kept = False
            check.reason = check.reason or "broken placeholder"
        # claims are read without Markdown emphasis: "around **72** days" claims 72 days
        claimed = _EMPHASIS.sub("", text)
        if check.kept:
            for kind, pattern in _CLAIM_PATTERNS:
                for m in pattern.finditer(claimed):
                    claim = Claim(kind, m.group(0), self._is_backed(kind, m.group(0)))
                    check.claims.append(claim)
                    if not claim.backed:
                        check.kept = False
                        check.reason = f"unbacked {kind} {m.group(0)!r}"
                        self.report.unbacked_claims.append(m.group(0))
            if check.kept and (misnamed := self._misattributed(claimed, check.claims)):
                claim, check.reason = misnamed
                check.kept = False
                self.report.unbacked_claims.append(claim)
            if check.kept and (off := self._off_answer(claimed, check.claims)):
                claim, check.reason = off
                check.kept = False
                self.report.unbacked_claims.append(claim)
            if check.kept and (conflict := self._rate_conflict(claimed)):
                claim, check.reason = conflict
                check.kept = False
                self.report.unbacked_claims.append(claim)
            if check.kept and _CALLED_EMAIL.search(claimed):
                check.kept = False
                check.reason = "tells the customer to call an e-mail address"
            if check.kept and (toll := _TOLL_FREE.search(claimed)) and not _TOLL_FREE.search(self.evidence_text):
                check.kept = False
                check.reason = f"calls the phone line {toll.group(0)!r}, which the policy does not"
                self.report.unbacked_claims.append(toll.group(0))
            if check.kept and (misused := _figure_as_screen(sentence, filled)):
                check.kept = False
                check.reason = f"uses {misused!r}, a figure, as the name of a screen"
            if check.kept:
                marked, plain = _ui_names(sentence)
                invented = [n for n in marked if not re.search(rf"\b{re.escape(n)}\b", self._ui_evidence)]
                # every marked screen name is also in the evidence's words, so those words suffice here
                words = _ui_key(self.evidence_text) if plain else ""
                invented += [n for n in plain if not re.search(rf"\b{re.escape(n)}\b", words)]
                if invented:
                    check.kept = False
                    check.reason = f"step names {invented[0]!r}, which the retrieved procedure does not"
            if check.kept:
                # a slot's name written as a line's label ("- Cancellation Fee: €9.00") is the guardrail's own
                known = "\n".join([self.evidence_text, self._conversation_text, *check.slots]).lower()
                unknown = [n for n in _names(text) if not re.search(rf"(?<![a-z]){re.escape(n)}(?![a-z])", known)]
                if unknown:
                    check.kept = False
                    check.reason = f"names {unknown[0]!r}, which neither the policy nor the customer does"
                    self.report.unbacked_claims.append(unknown[0])
            if check.kept and self.needs_no_details:
                listed = self._details_list and _LIST_ITEM.match(text) is not None
                self._details_list = listed
                if _DETAILS_REQUEST.search(text):
                    self._asked_details = True
                    self._details_list = text.rstrip().endswith(":")  # "...the following details:" + a list
                    check.kept = False
                    check.reason = "asks for details a policy question does not need"
                elif listed or (self._asked_details and _DETAILS_FOLLOW_UP.search(text.lstrip("-*• "))):
                    check.kept = False
                    check.reason = "follows a dropped request for details"
            if (check.kept and self.charges and _FREE_CLAIM.search(text)
                    and not any(c.kind in ("money", "percent", "amount") for c in check.claims)):
                check.kept = False
                check.reason = f"calls it free; the policy asked about charges {self.charges[0]}"
                self.report.unbacked_claims.append(_FREE_CLAIM.search(text).group(0))  # type: ignore[union-attr]
            if check.kept and (given := next((g for g in _grants(text) if g not in self._granted), None)):
                check.kept = False
                check.reason = f"hands out a {given} the policy does not give"
                self.report.unbacked_claims.append(given)
            if check.kept and (ruled_out := contradicts(text, self.limits, self.asked_limit)):
                check.kept = False
                check.reason = f"{RULED_OUT}: {ruled_out.sentence}"
            if check.kept and self._unbacked_yes and contradicts(text, [], self._unbacked_yes):
                check.kept = False
                check.reason = UNBACKED_YES
            if check.kept and self.kb_answer and not _BESIDE_KB_KEPT.search(text.lstrip("-*• ")):
                check.kept = False
                check.reason = BESIDE_KB_ANSWER
            if check.kept and _PROMISE_RE.search(text) and not self._promise_backed(text):
                check.kept = False
                check.reason = "promise the policy does not make"
                self.report.unbacked_claims.append(_PROMISE_RE.search(text).group(0))  # type: ignore[union-attr]
            if check.kept and not self.steps:
                # a step that states a figure ("3. Refunds take 5 business days.") still says something;
                # "Visit our larkspur.example." does not
                # (nor does one that only repeats the customer's order number: "3. Look for the order LK 42710343.")
                if _LIST_ITEM.match(text) and not any(c.kind not in ("url", "email", "phone", "identifier")
                                                      for c in check.claims):
                    check.kept = False
                    check.reason = STEP_DROPPED
                elif text.rstrip().endswith(":") and _STEPS_LEAD.search(text) and not check.claims:
                    check.kept = False
                    check.reason = STEPS_LEAD_DROPPED
            key = _sentence_key(text)
            if check.kept and len(key.split()) >= 3 and key in self._said:
                check.kept = False
                check.reason = "repeats an earlier sentence"
            elif check.kept:
                self._said.add(key)
        text = re.sub(r"\s{2,}", " ", text).replace(" ,", ",").replace(" .", ".")
        # the widget shows plain text: "**36** months" would reach the customer with its asterisks
        check.text = _BOLD.sub(r"\2", text)
        self.report.sentences.append(check)
        return check

    def mark_said(self, sentence: str) -> None:
        """Count ``sentence`` (shown to the customer from elsewhere) as said: the model's repeat of it is dropped."""
        for part in re.split(r"(?<=[.!?])\s+", sentence):
            key = _sentence_key(part)
            if len(key.split()) >= 3:
                self._said.add(key)

    def _add_evidence(self, value: str) -> None:
        self.evidence_text += "\n" + value
        if "›" in value:  # a filled screen path (My Account › Orders) names screens a later step may use
            self._ui_evidence += " | " + _ui_key(value)
        self._evidence_norm += "|" + _norm(value)
        self._evidence_numbers |= _numbers(value)
        self._index_kinds(value)

    def _index_kinds(self, item: str) -> None:
        """Record which numbers ``item`` states as money, percentages, durations and times.

        A bare fact value ("30") has no unit or sentence around it to say what kind of number it is;
        its numbers back claims of every kind. "€60" or "100%" say what they are.
        """
        words = _norm_words(item)
        for amount, unit in _rates(item):
            self._rates.setdefault(amount, set()).add(unit)
        found = False
        for kind, pattern in _CLAIM_PATTERNS:
            target = _KIND_EVIDENCE.get(kind)
            if target is not None:
                for m in pattern.finditer(words):
                    self._kind_numbers[target] |= _numbers(m.group(0))
                    found = True
        if not found and len(item) <= 40 and not any(p.search(item) for kind, p in _CLAIM_PATTERNS
                                                        if kind in _CONTACT_KINDS):
            for numbers in self._kind_numbers.values():
                numbers |= _numbers(item)

    def _is_backed(self, kind: str, claim: str) -> bool:
        if kind in ("phone", "identifier"):
            # the whole number, not a part of one: "+31 20 555" is not backed by "+31 20 555 0142"
            found = re.compile(rf"(?<!\d){re.escape(_norm(claim))}(?!\d)").search
            return bool(found(self._evidence_norm) or (kind == "identifier" and found(self._conversation_norm)))
        if kind in _CONTACT_KINDS:
            # the whole address: "larkspur.example/return" is not backed by "larkspur.example/returns-form"
            key = claim.lower().rstrip("/.")
            return re.search(rf"{re.escape(key)}(?![\w-])", self.evidence_text.lower()) is not None
        nums = _numbers(claim)
        if not nums:
            return False
        return nums <= self._kind_numbers.get(_KIND_EVIDENCE.get(kind, ""), self._evidence_numbers)

    def _misattributed(self, text: str, claims: list[Claim]) -> tuple[str, str] | None:
        """The one figure ``text`` gives for a fact it names, and why, when it is not that fact's value."""
        if not self._named_facts:
            return None
        words = _word_stems(text)
        named = [value for names, value in self._named_facts if any(n <= words for n in names)]
        for kind in ("money", "percent", "duration"):
            of_kind = [c for c in claims if c.kind == kind or kind == "money" and c.kind == "amount"]
            if len(of_kind) != 1:
                continue  # two figures: which one goes with the named fact cannot be told
            # a fact of this kind, or a bare number ("30"); not a list of names or opening hours
            values = [v for v in named if _value_kind(v) == kind or re.fullmatch(r"\s*\d+(?:[.,]\d+)?\s*", v)]
            claim = of_kind[0].text
            if values and not any(_numbers(claim) <= _numbers(v) for v in values):
                return claim, f"gives {claim!r} for a fact whose value is {values[0]}"
        return None

    def _off_answer(self, text: str, claims: list[Claim]) -> tuple[str, str] | None:
        """A figure of the asked fact's kind that is not its value, in a sentence naming no other fact.

        Asked "How fast is express delivery?" (1 business day), the model wrote "it's available within
        the following time frames: 2-4 business days after the order is Shipped": a real figure of the
        policy (standard delivery's), which the customer reads as the answer. A sentence that names the
        fact it gives a figure for ("standard delivery takes 2-4 business days") is left to
        :meth:`_misattributed`.
        """
        if not self._asked_values:
            return None
        words = _word_stems(text)
        # a fact named by its placeholder's words, one left out of three or more ("Standard delivery takes
        # 3-5 business days": "Standard Delivery Time")
        if any(len(n & words) >= len(n) - (len(n) >= 3) for names, _ in self._named_facts for n in names):
            return None
        # a charge is a sum or a share of the price: asked for a 15% fee, "The fee is €7.50" is off the answer
        charge = ("money", "percent", "amount")
        for kind, counts in (("money", charge), ("percent", charge), ("duration", ("duration",))):
            asked = [v for v in self._asked_values if _value_kind(v) == kind]
            for claim in claims:
                if asked and claim.kind in counts and not any(
                        _numbers(claim.text) <= _numbers(v) for v in self._asked_values):
                    return claim.text, f"gives {claim.text!r} where the customer asked for {asked[0]}"
        return None

    def _rate_conflict(self, text: str) -> tuple[str, str] | None:
        """The first amount ``text`` charges per another unit than the evidence does, and why."""
        for amount, unit in _rates(text):
            if amount in self._rates and unit not in self._rates[amount]:
                policy = " or ".join(sorted(self._rates[amount]))
                return f"{amount} per {unit}", f"charges {amount} per {unit}; the policy charges it per {policy}"
        return None

    def _promise_backed(self, sentence: str) -> bool:
        for m in _PROMISE_RE.finditer(sentence):
            phrase = m.group(0).lower()
            core = re.sub(r"^(?:i|we)\s(?:will|'ll|can|shall)\s(?:personally\s)?", "", phrase)
            evidence = self.evidence_text.lower()
            if core in evidence:
                continue
            # the money back in full, in the policy's other words: "a full refund", "a 100 % refund"
            if _FULL_REFUND.search(core) and _FULL_REFUND.search(evidence):
                continue
            return False
        return True

    # -- whole replies and streams -----------------------------------------------
    def filter_stream(self, pieces: Iterable[str], cut: Callable[[], bool] | None = None) -> Iterator[str]:
        """Yield the checked reply sentence by sentence as the model streams it.

        ``cut``, asked once the stream has ended, says whether the model was stopped by the reply
        cap; then the unfinished last sentence is dropped instead of shown broken off.
        """
        buffer = ""
        emitted_any = False
        for piece in pieces:
            buffer += piece
            while True:
                m = _sentence_end(buffer)
                if not m:
                    break
                sentence, buffer = buffer[: m.end()], buffer[m.end():]
                out = self._emit(sentence, emitted_any)
                if out:
                    emitted_any = True
                    yield out
        if buffer.strip() and cut is not None and cut():
            text = buffer.strip()
            self.report.sentences.append(SentenceCheck(original=text, text="", kept=False,
                                                       reason="cut off at the reply length cap"))
        elif buffer.strip():
            out = self._emit(buffer, emitted_any)
            if out:
                yield out
        if self._held is not None:
            # the reply ended on the lead: a line ending in a colon with nothing after it tells the customer
            # nothing ("Let me provide you with the information you need:")
            self._drop_held()
        dropped = [s for s in self.report.sentences if not s.kept]
        if dropped:
            self.report.verdict = "repaired"

    def _emit(self, sentence: str, emitted_any: bool) -> str:
        before = len(self.report.sentences)
        out = self._emit_checked(sentence, emitted_any or self._held is not None)
        out = self._hold_list_lead(out, self.report.sentences[before:])
        lead = re.match(r"\s*", out).group(0)  # type: ignore[union-attr]
        rest = out[len(lead):]
        if lead.count("\n") + self._trailing_newlines > 2:
            # dropped sentences between two paragraphs leave one blank line, not a gap of several
            out = "\n" * max(0, 2 - self._trailing_newlines) + rest
        if rest:
            tail = rest[len(rest.rstrip()):]
            self._trailing_newlines = tail.count("\n")
        else:
            self._trailing_newlines += out.count("\n")
        if out.strip() or out.endswith("\n"):
            self._line_open = not out.endswith("\n")
        return out

    def _hold_list_lead(self, out: str, checks: list[SentenceCheck]) -> str:
        """Hold a line that introduces a list ("... the following time frames:") until the list shows.

        The model's steps are dropped for every question; the line that led into them used to stay,
        ending in a colon with nothing after it. It is shown with the first list item kept, and dropped
        when an item was dropped and something else than an item comes next (or nothing does).
        """
        if self._held is not None:
            if not out.strip():
                self._held_lost_items |= any(not c.kept and _LIST_ITEM.match(c.original) for c in checks)
                if out and not any(not c.kept for c in checks):
                    self._held += out  # the line break after the lead
                return ""
            held, self._held = self._held, None
            if _LIST_ITEM.match(out.lstrip()) or not self._held_lost_items:
                out = held + out
            else:
                self._drop_held()
                out = ("\n" if held.strip() and not out.startswith("\n") and "\n" in held else "") + out
        if out.strip() and out.rstrip().endswith(":") and checks and checks[-1].kept:
            self._held, self._held_check, self._held_lost_items = out, checks[-1], False
            return ""
        return out

    def _drop_held(self) -> None:
        if self._held_check is not None:
            self._held_check.kept = False
            self._held_check.reason = "introduces a list whose items were all dropped"
        self._held, self._held_check = None, None

    def _emit_checked(self, sentence: str, emitted_any: bool) -> str:
        if self._drop_line and "\n" in sentence[: len(sentence) - len(sentence.lstrip())]:
            self._drop_line = False  # a new line: the dropped step has ended
        if not sentence.strip():
            if self._after_drop:  # the line break that ended a dropped line goes with it
                self._after_drop = False
                # ... unless a kept sentence opened that line ("Kept. Dropped.\nNext")
                return sentence if self._line_open and "\n" in sentence else ""
            return sentence if emitted_any else ""
        lead = sentence[: len(sentence) - len(sentence.lstrip())]
        if self._drop_line:
            # "3. If you have questions, contact us. They are available ...": the step's line goes whole
            self.report.sentences.append(SentenceCheck(original=sentence.strip(), text="", kept=False,
                                                       reason="continues a dropped step"))
            self._drop_line = not sentence.endswith("\n")
            self._after_drop = True
            return ""
        check = self.check_sentence(sentence.strip())
        step = _STEP_NUMBER.match(sentence.strip())
        if not check.kept and check.reason == STEP_DROPPED:
            self._drop_line = not sentence.endswith("\n")
        if not check.kept:
            self._after_drop = True
            if step:
                self._step_in = int(step.group(1))
            if sentence.endswith("\n") and self._line_open:
                # "Kept. Dropped.\nNext" shows "Kept.\nNext": the dropped sentence's line break still ends the kept line
                return "\n"
            return ""
        self._after_drop = False
        text = check.text
        if step and not self.steps:
            text = re.sub(r"^\d{1,2}[.)]\s+", "", text)  # a kept item of a dropped list is no longer step "4."
        elif step and (m := _STEP_NUMBER.match(text)):
            number = int(m.group(1))
            # "1. 2. [3. dropped] 4." reads "1. 2. 3." to the customer: no gap in the list
            out = self._step_out + 1 if number == self._step_in + 1 and number > 1 else number
            self._step_in, self._step_out = number, out
            text = f"{out}." + text[m.end(1) + 1:]
        trail = sentence[len(sentence.rstrip()):] if sentence.endswith("\n") else ""  # keeps "\r\n" whole
        return (lead if emitted_any else "") + text + trail

    def apply(self, reply: str) -> str:
        return "".join(self.filter_stream([reply])).strip()


def _value_kind(value: str) -> str | None:
    """Whether a fact's value is money, a percentage or a duration; None for a bare number ("30")."""
    for kind in ("money", "percent", "duration"):
        if _CLAIM_BY_KIND[kind].search(value):
            return kind
    return None


def only_courtesy(sentences: Iterable[SentenceCheck]) -> bool:
    """Whether every sentence kept is an opening line, an apology or an offer of more help: the reply
    says nothing of the policy ("I understand that you are looking for information on our return
    policy. If you have any further questions, ...")."""
    kept = [s.text for s in sentences if s.kept and s.text.strip()]
    return bool(kept) and all(_BESIDE_KB_KEPT.search(t.lstrip("-*• ")) for t in kept)


#: steps of a procedure the fallback quotes at most
MAX_QUOTED_STEPS = 8


def grounded_quote(passages: list[dict[str, Any]], max_sentences: int = 3) -> str:
    """A fallback answer that only quotes the knowledge base."""
    if not passages:
        return ""
    top = passages[0]
    # plain text, line by line: no "**" marks, no table rows; a numbered procedure is quoted whole (as
    # far as MAX_QUOTED_STEPS), not cut after "1. Sign in and open My Account › Orders. 2."
    lines = [line.replace("**", "").strip() for line in str(top.get("text", "")).splitlines()
             if line.strip() and not re.match(r"\s*(?:#|\|)", line)]
    steps = [m.group(1) for line in lines if (m := re.match(r"\d{1,2}[.)]\s+(.+)$", line))]
    if lines and re.match(r"\d{1,2}[.)]\s", lines[0]) and len(steps) >= 2:
        quote, sep = "\n".join(f"{i}. {step}" for i, step in enumerate(steps[:MAX_QUOTED_STEPS], 1)), "\n"
    else:
        prose = " ".join(re.sub(r"^(?:[-*•]|\d{1,2}[.)])\s+", "", line) for line in lines)
        quote, sep = " ".join(re.split(r"(?<=[.!?])\s+", prose)[:max_sentences]).strip(), " "
    title = top.get("title") or top.get("document_id")
    heading = top.get("heading")
    where = f"{title} › {heading}" if heading and heading != title else f"{title}"
    return f"Here is what our {where} says:{sep}{quote}"
