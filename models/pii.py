"""Personal data scrubbing: replace it with ``{{Placeholders}}`` before anything is stored or trained on.

What is recognised (in this order, so a longer pattern wins over a shorter one):

* e-mail addresses -> ``{{Customer Email}}``
* IBANs -> ``{{Bank Account}}``
* payment card numbers (13-19 digits, grouped like a card or passing the Luhn check with a card
  prefix) -> ``{{Card Number}}``
* order / purchase / invoice references (a keyword followed by an id with digits, ``#12345``)
  -> ``{{Order Number}}`` / ``{{Invoice Number}}``
* phone numbers (``+`` or separators, 9-15 digits) -> ``{{Customer Phone}}``
* any remaining run of 8+ digits -> ``{{Order Number}}`` (in support tickets it is nearly always one)
* names after "my name is" / "this is" / "I'm" + capitalised words (of any Latin alphabet:
  "Ólafur"), and names in a sign-off ("Thanks,\\nAnna Berg") -> ``{{Customer Name}}``; the ticket
  importer also scrubs the names a customer gave from the agent's reply (:func:`names_in`)

It is a heuristic: it favours scrubbing too much over leaking (a long product code may become an
order number). Known values (e.g. the bitext ``entity_value`` column) can be passed explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EMAIL = "{{Customer Email}}"
PHONE = "{{Customer Phone}}"
CARD = "{{Card Number}}"
ORDER = "{{Order Number}}"
INVOICE = "{{Invoice Number}}"
IBAN = "{{Bank Account}}"
NAME = "{{Customer Name}}"

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_CARD_GROUPED_RE = re.compile(r"\b\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}\b")
_DIGITS_RE = re.compile(r"\b\d{13,19}\b")
_REF_RE = re.compile(
    r"(?P<kw>\b(?:order|purchase|invoice|bill|receipt|tracking|shipment|parcel)s?"
    r"(?:\s+(?:number|no\.?|num|id|ref(?:erence)?|code))?\s*(?:is\s+|:\s*|nr\.?\s*)?)"
    r"(?P<id>#?\s?(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,})",
    re.IGNORECASE,
)
# an IBAN: country code, check digits, 11-30 letters and digits, often in groups of four
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_HASH_ID_RE = re.compile(r"(?<![\w{])#\s?\d{4,}\b")
_PHONE_RE = re.compile(
    r"(?<![\w{])(?:\+\d[\d ().-]{7,}\d|\(?\d{2,4}\)?[ .-]\d{2,4}[ .-]\d{2,5}(?:[ .-]\d{2,5})?)(?!\w)"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")
_LONG_DIGITS_RE = re.compile(r"(?<![\w{])\d{8,}(?!\w)")
# names must really be capitalised even inside the case-insensitive patterns
# (letters of any Latin alphabet: "Ólafur Þórsson", "Łukasz")
_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_NAME_WORD = rf"(?-i:[{_UPPER}][^\W\d_]*(?:['\-][^\W\d_]+)*)"
_INTRO_RE = re.compile(
    rf"\b(?P<lead>my name is|my name's|name is|this is|i am|i'm)\s+(?P<name>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})",
    re.IGNORECASE,
)
_SIGNOFF_RE = re.compile(
    rf"(?P<lead>\b(?:thanks|thank you|regards|best regards|kind regards|best|cheers|sincerely|br)\s*[,!.\-]?\s*\n?\s*(?:-\s*)?)"
    rf"(?P<name>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})\s*[.!]?\s*$",
    re.IGNORECASE,
)
# words that follow "I am"/"this is" but are not names
_NOT_NAMES = {
    "a", "an", "the", "not", "very", "so", "really", "trying", "unable", "looking", "having",
    "still", "just", "sure", "sorry", "here", "there", "in", "on", "at", "going", "writing",
    "calling", "waiting", "interested", "unhappy", "happy", "frustrated", "angry", "upset",
    "ridiculous", "unacceptable", "urgent", "about", "regarding", "to", "for", "with",
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and digits[0] in "3456" and luhn_ok(digits):
        return CARD
    return match.group(0)


def _phone(match: re.Match[str]) -> str:
    raw = match.group(0)
    digits = re.sub(r"\D", "", raw)
    if not 9 <= len(digits) <= 15 or _DATE_RE.match(raw.strip()):
        return raw
    return PHONE


def _ref(match: re.Match[str]) -> str:
    kw = match.group("kw")
    placeholder = INVOICE if re.match(r"(invoice|bill|receipt)", kw.strip(), re.IGNORECASE) else ORDER
    return kw + placeholder


def _intro(match: re.Match[str]) -> str:
    words = match.group("name").split()
    lead = match.group("lead").lower()
    # "I am Frustrated" is a mood, not a name; only take capitalised words that are not stop words
    kept = []
    for word in words:
        if word.lower() in _NOT_NAMES or not word[0].isupper():
            break
        kept.append(word)
    if not kept or (
        lead in ("i am", "i'm", "this is") and len(kept) < 2 and not match.group("name")[0].isupper()
    ):
        return match.group(0)
    if lead in ("i am", "i'm", "this is") and not all(w[0].isupper() for w in kept):
        return match.group(0)
    rest = match.group("name")[len(" ".join(kept)) :]
    return match.group(0)[: match.start("name") - match.start()] + NAME + rest


def names_in(text: str) -> list[str]:
    """The customer names ``text`` introduces ("my name is Maria Lopez", a sign-off "Thanks, John"),
    each with its first name on its own: scrubbing the agent's reply with them catches "Hello Maria"."""
    found: list[str] = []
    for m in _INTRO_RE.finditer(text or ""):
        if _intro(m) != m.group(0):  # (what _intro accepts as a name)
            kept = m.group(0)[m.start("name") - m.start():]
            words = [w for w in kept.split() if w[:1].isupper() and w.lower() not in _NOT_NAMES]
            name = " ".join(words[:3])
            if name:
                found += [name, words[0]] if len(words) > 1 else [name]
    for m in _SIGNOFF_RE.finditer(text or ""):
        words = m.group("name").split()
        found += [" ".join(words), words[0]] if len(words) > 1 else words
    return list(dict.fromkeys(n for n in found if len(n) >= 2))


def scrub_pii(text: str, known: Iterable[tuple[str, str]] = ()) -> tuple[str, list[str]]:
    """``(scrubbed text, kinds found)``; ``known`` is ``(value, placeholder)`` pairs replaced first."""
    if not text:
        return text, []
    found: list[str] = []
    out = text
    for value, placeholder in known:
        value = (value or "").strip()
        if len(value) < 2:
            continue
        # whole tokens only; ids may appear zero-padded ("00123842" for "123842")
        pad = "0*" if value.isdigit() else ""
        # a capitalised value may follow a lower-case letter: "fromAnna Freeman" is Anna Freeman
        before = r"(?<![A-Z0-9_{])" if value[:1].isupper() else r"(?<![\w{])"
        pattern = re.compile(rf"{before}{pad}{re.escape(value)}(?![\w}}])")
        new = pattern.sub(placeholder, out)
        if new != out:
            out = new
            found.append(placeholder)

    def sub(pattern: re.Pattern[str], repl, kind: str) -> None:
        nonlocal out
        new = pattern.sub(repl, out)
        if new != out:
            found.append(kind)
            out = new

    sub(_EMAIL_RE, EMAIL, EMAIL)
    sub(_IBAN_RE, IBAN, IBAN)
    sub(_CARD_GROUPED_RE, _card, CARD)
    sub(_DIGITS_RE, _card, CARD)
    sub(_REF_RE, _ref, ORDER)
    sub(_HASH_ID_RE, ORDER, ORDER)
    sub(_PHONE_RE, _phone, PHONE)
    sub(_LONG_DIGITS_RE, ORDER, ORDER)
    sub(_INTRO_RE, _intro, NAME)
    sub(_SIGNOFF_RE, lambda m: m.group("lead") + NAME, NAME)
    kinds = {p for p in found if p in out}
    kinds |= {p for p in (EMAIL, PHONE, CARD, ORDER, INVOICE, IBAN, NAME) if out.count(p) > text.count(p)}
    return out, sorted(kinds)


#: bitext ``entity_type`` -> placeholder for its ``entity_value``
BITEXT_ENTITY_PLACEHOLDERS = {
    "order_id": ORDER,
    "invoice_id": INVOICE,
    "person_name": NAME,
}
