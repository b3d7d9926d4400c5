"""Personal data scrubbing: replace it with ``{{Placeholders}}`` before anything is stored or trained on.

What is recognised (in this order, so a longer pattern wins over a shorter one):

* e-mail addresses -> ``{{Customer Email}}``
* IBANs -> ``{{Bank Account}}``
* payment card numbers (13-19 digits, grouped like a card or passing the Luhn check with a card
  prefix) -> ``{{Card Number}}``
* order / purchase / invoice references (a keyword followed by an id with digits, ``#12345``)
  -> ``{{Order Number}}`` / ``{{Invoice Number}}``
* dates of birth ("my date of birth is 12/03/1985", "DOB: 1985-03-12", "born on 3 May 1985")
  -> ``{{Date of Birth}}`` (other dates are kept)
* postal addresses: a street and house number ("Keizersgracht 123", "Van Baerlestraat 12-2",
  "12 Baker Street", "Hauptstraße 5"), Dutch postcodes ("1015 CJ") and UK postcodes ("SW1A 1AA"), with
  the town after a postcode at the end of a sentence -> ``{{Customer Address}}``
* phone numbers (``+`` or separators, 9-15 digits) -> ``{{Customer Phone}}``
* any remaining run of 8+ digits -> ``{{Order Number}}`` (in support tickets it is nearly always one)
* names -> ``{{Customer Name}}``: after "my name is" / "this is" / "I'm", before "here" ("Pieter here"),
  after a title ("Mr. Smith", "Mrs", "Ms", "Dr", "Mevr"...), after a salutation followed by a comma or
  the line's end ("Dear Sarah,", "Hi Sarah,", "Hello Tom"), in a sign-off ("Thanks,\\nAnna Berg",
  "Warm regards, Tom from Brightnest"), a last line "Tom from Brightnest", and a last line "- Sarah" (not
  the last item of a list: after a line ending in a colon or another list item). A name is capitalised
  words of any Latin alphabet ("Ólafur"), with surname particles between them ("Anna de Vries",
  "Pieter van den Berg", "Ludwig von Mises", "Jan ter Horst"). Words that are not names are never
  taken for one: "Dear customer", "Hi there", "Dear Sir", "Hi Team", "Help Centre", weekdays and months.
  The ticket importer also scrubs the names a customer gave from the agent's reply (:func:`names_in`)

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
ADDRESS = "{{Customer Address}}"
BIRTH_DATE = "{{Date of Birth}}"

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
# surname particles between the words of a name ("Anna de Vries", "Pieter van den Berg")
PARTICLES = (
    "van", "de", "der", "den", "von", "vom", "zu", "zum", "zur", "ter", "ten", "te", "het", "'t", "op",
    "da", "di", "du", "del", "della", "dos", "das", "do", "la", "le", "af", "av", "bin", "ibn", "al", "el",
)
_PARTICLE = r"(?-i:(?:" + "|".join(re.escape(p) for p in sorted(PARTICLES, key=len, reverse=True)) + r"))"
# a name: up to three capitalised words, with particles between them
_NAME_SEQ = rf"{_NAME_WORD}(?:\s+(?:{_PARTICLE}\s+)*{_NAME_WORD}){{0,2}}"
_INTRO_RE = re.compile(
    rf"\b(?P<lead>my name is|my name's|name is|this is|i am|i'm)\s+(?P<name>{_NAME_SEQ})",
    re.IGNORECASE,
)
_SIGNOFF_LEADS = (
    r"thanks(?: again)?|thank you|many thanks|with thanks|regards|best regards|kind regards|warm regards"
    r"|warmest regards|best wishes|all the best|best|cheers|sincerely|yours sincerely|yours truly|yours"
    r"|take care|greetings|br|groeten|met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?"
)
_SIGNOFF_RE = re.compile(
    rf"(?P<lead>\b(?:{_SIGNOFF_LEADS})\s*[,!.\-]?\s*\n?\s*(?:[-–—]\s*)?)"
    rf"(?P<name>{_NAME_SEQ})(?P<rest>(?:\s+(?:from|at|@)\s+[^\n]{{1,60}}?)?\s*[.!]?\s*)$",
    re.IGNORECASE,
)
# a last line "Tom from Brightnest" (an agent's sign-off without a lead)
_SIGNED_RE = re.compile(
    rf"(?:^|(?<=\n)|(?<=[.!?] ))(?P<lead>(?:[-–—]\s*)?)(?P<name>{_NAME_SEQ})"
    rf"(?P<rest>\s+(?:from|at|@)\s+(?-i:[A-Z0-9][^\n]{{0,60}}?)\s*[.!]?\s*)$",
)
# a last line "- Sarah" (a dash and a name, the whole sign-off), on a line of its own or after a sentence;
# see _dash_signed: not when it ends a list ("Delivery options:\n- Standard\n- Express")
_DASH_SIGNED_RE = re.compile(
    rf"(?:(?<=\n)|(?<=[.!?] ))(?P<lead>[ \t]*[-–—][ \t]*)(?P<name>{_NAME_SEQ})(?P<rest>[ \t]*[.!]?\s*)$",
)
_LIST_ITEM_RE = re.compile(r"^\s*(?:[-–—*•·]|\d{1,3}[.)])\s")
# "Pieter van den Berg here" at the start of a line or after a greeting
_HERE_RE = re.compile(
    rf"(?:^|(?<=\n)|(?<=[,.!?] ))(?P<name>{_NAME_SEQ})(?=\s+here\b)",
)
_TITLES = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Mevr", "Mevrouw", "Dhr", "Meneer", "Herr", "Frau",
           "Mme", "Mlle")
_TITLE_RE = re.compile(
    r"(?<![\w{])(?:" + "|".join(_TITLES) + rf")\.?\s+(?P<particles>(?:{_PARTICLE}\s+)*)(?P<name>{_NAME_SEQ})"
)
_SALUTATION_RE = re.compile(
    rf"(?P<lead>\b(?i:dear|hi|hello|hey|hiya|hallo|hoi|beste|good (?:morning|afternoon|evening)|morning)"
    rf"[ \t]+)(?P<name>{_NAME_SEQ})(?=[ \t]*(?:[,!.:;\n]|$))"
)
# dates of birth (other dates are order and delivery dates: kept)
_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
           r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|januari|februari|maart|mei|juni|juli|augustus|oktober)")
_A_DATE = (rf"(?:\d{{1,2}}[./-]\d{{1,2}}[./-]\d{{2,4}}|\d{{4}}[./-]\d{{1,2}}[./-]\d{{1,2}}"
           rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?,?\s+\d{{4}}|{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})")
_BIRTH_RE = re.compile(
    rf"(?P<lead>\b(?:date of birth|birth ?date|birthday|d\.?o\.?b\.?|born(?:\s+on)?|geboortedatum|geboren(?:\s+op)?)"
    rf"\b[\s:]*(?:is\s+|was\s+|-\s*)?)(?P<date>{_A_DATE}|(?<=born in )\d{{4}})",
    re.IGNORECASE,
)
# postal addresses
_STREET_SUFFIXES = (
    "straat", "gracht", "weg", "laan", "plein", "kade", "singel", "dijk", "dreef", "steeg", "markt", "wal",
    "burgwal", "plantsoen", "hof", "pad", "baan", "ring", "strasse", "straße", "gasse", "allee", "platz",
)
_EN_STREETS = (
    "Street", "St", "Road", "Rd", "Avenue", "Ave", "Lane", "Ln", "Drive", "Close", "Way", "Crescent", "Court",
    "Place", "Terrace", "Square", "Gardens", "Grove", "Boulevard", "Blvd", "Row", "Mews", "Parade", "Gate",
)
_HOUSE_NO = r"\d{1,5}(?:\s?[a-zA-Z](?![\w])|[-/]\d{1,4}(?:\s?[a-zA-Z](?![\w]))?|\s?(?:hs|bis|I{1,3})(?![\w]))?"
# (not a year or an amount before a unit or a region: "1200 MB", "10 PM", "since 2026 EU orders")
_NL_POSTCODE = r"[1-9]\d{3}[ ]?(?!SA|SD|SS|MB|GB|KB|TB|KG|ML|CM|MM|KM|PM|AM|CL|DL|HZ|KW|EU|UK|US)(?-i:[A-Z]{2})(?![\w])"
_UK_POSTCODE = r"(?-i:[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2})(?![\w])"
_POSTCODE = rf"(?:{_NL_POSTCODE}|{_UK_POSTCODE})"
# the town after a postcode, when it ends a sentence ("1015 CJ Amsterdam.")
_TOWN = rf"(?:[ \t]+(?-i:[{_UPPER}][^\W\d_]+(?:[ -][{_UPPER}][^\W\d_]+)?)(?=\s*(?:[,.!?;)\n]|$)))?"
_STREET_NL = (rf"(?-i:(?:[{_UPPER}][^\W\d_]*\.?\s+){{0,3}}[{_UPPER}][^\W\d_]*(?:"
              + "|".join(_STREET_SUFFIXES) + rf"))\s+{_HOUSE_NO}")
_STREET_EN = (rf"\d{{1,5}}[A-Za-z]?,?\s+(?-i:(?:[{_UPPER}][^\W\d_']*\s+){{1,3}}(?:"
              + "|".join(_EN_STREETS) + r"))\b\.?")
# (a town between the street and the postcode: "12 Baker Street, London NW1 6XE")
_ADDRESS_RE = re.compile(
    rf"(?<![\w{{])(?:{_STREET_NL}|{_STREET_EN})"
    rf"(?:,?\s+(?:(?-i:[{_UPPER}][^\W\d_]+),?\s+)?{_POSTCODE}{_TOWN})?(?![\w}}])"
)
_POSTCODE_RE = re.compile(rf"(?<![\w{{]){_POSTCODE}{_TOWN}")
# words that follow "I am"/"this is" but are not names
_NOT_NAMES = {
    "a", "an", "the", "not", "very", "so", "really", "trying", "unable", "looking", "having",
    "still", "just", "sure", "sorry", "here", "there", "in", "on", "at", "going", "writing",
    "calling", "waiting", "interested", "unhappy", "happy", "frustrated", "angry", "upset",
    "ridiculous", "unacceptable", "urgent", "about", "regarding", "to", "for", "with",
}  # fmt: skip
# capitalised words that are not names: who a salutation or sign-off addresses when it names no one,
# the company's desks, weekdays and months
_NOT_NAME_WORDS = {
    "customer", "customers", "client", "clients", "sir", "madam", "team", "all", "everyone", "everybody",
    "there", "friend", "friends", "support", "service", "services", "valued", "shopper", "colleague",
    "colleagues", "folks", "guys", "again", "both", "the", "help", "centre", "center", "desk", "care",
    "member", "members", "good", "morning", "afternoon", "evening", "day", "thanks", "thank", "regards",
    "please", "order", "orders", "account", "hello", "hi", "dear", "you", "we", "our", "your", "my", "it",
    "i", "ok", "okay", "yes", "no", "sorry", "welcome", "mr", "mrs", "ms", "dr", "agent", "manager",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today", "tomorrow",
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
    "november", "december", "best", "cheers", "kind", "warm", "sincerely", "yours", "greetings",
}


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


#: the first part of a contraction that is not a name ("I'm here", "We're here")
_CONTRACTED = {"i", "we", "you", "it", "that", "there", "here", "let", "he", "she", "they", "what", "who", "don",
               "can", "won", "isn", "didn", "doesn", "where", "how"}


def _is_name_word(word: str) -> bool:
    if not word or not word[0].isupper():
        return False
    low = word.lower().replace("’", "'")
    return low not in _NOT_NAMES | _NOT_NAME_WORDS and low.split("'")[0] not in _CONTRACTED


def _name_end(name: str) -> int:
    """How much of ``name`` (a :data:`_NAME_SEQ` match) really is a name: its capitalised words, with the
    particles between them, up to the first word that is not a name ("Tom Support" -> "Tom"); 0: none."""
    words = list(re.finditer(r"\S+", name))
    end, i = 0, 0
    while i < len(words):
        word = words[i].group()
        if word in PARTICLES and end:
            j = i
            while j < len(words) and words[j].group() in PARTICLES:
                j += 1
            if j < len(words) and _is_name_word(words[j].group()):
                end, i = words[j].end(), j + 1
                continue
            break
        if not _is_name_word(word):
            break
        end, i = words[i].end(), i + 1
    return end


def _replace_name(match: re.Match[str], *, whole: bool = False) -> str:
    """The match with its ``name`` group's real name replaced by :data:`NAME` (unchanged when it names no one).
    ``whole``: only when every word of the group is a name (a sign-off: "Best, The Larkspur Team" is kept)."""
    name = match.group("name")
    end = _name_end(name)
    if not end or (whole and end < len(name.rstrip())):
        return match.group(0)
    start = match.start("name") - match.start()
    text = match.group(0)
    return text[:start] + NAME + text[start + end :]


def _in_list(match: re.Match[str]) -> bool:
    """Whether a "- Word" line is the last item of a list rather than a sign-off: the line before it is a
    list item too, or introduces one (ends with a colon)."""
    before = match.string[: match.start()]
    if not before.endswith("\n"):
        return False  # "Thanks for the help. - Sarah": after a sentence on the same line
    previous = next((line for line in reversed(before.split("\n")) if line.strip()), "")
    return bool(_LIST_ITEM_RE.match(previous)) or previous.rstrip().endswith(":")


def _dash_signed(match: re.Match[str]) -> str:
    return match.group(0) if _in_list(match) else _replace_name(match, whole=True)


def _intro(match: re.Match[str]) -> str:
    lead = match.group("lead").lower()
    name = match.group("name")
    # "I am Frustrated" is a mood, not a name: after "I am" / "this is" a name starts with a capital
    if lead in ("i am", "i'm", "this is") and not name[0].isupper():
        return match.group(0)
    return _replace_name(match)


def _title(match: re.Match[str]) -> str:
    """"Mr. Smith", "Dr van der Linden" -> the title and the name as one placeholder."""
    end = _name_end(match.group("name"))
    if not end:
        return match.group(0)
    return NAME + match.group(0)[match.start("name") - match.start() + end :]


def _names_of(match: re.Match[str], *, whole: bool = False) -> list[str]:
    """The name a match holds, and its first word on its own (when it has more than one)."""
    name = match.group("name")
    end = _name_end(name)
    if not end or (whole and end < len(name.rstrip())):
        return []
    full = " ".join(name[:end].split())
    first = full.split()[0]
    return [full, first] if first != full else [full]


def names_in(text: str) -> list[str]:
    """The customer names ``text`` gives ("my name is Maria Lopez", "Mr. Smith", "Pieter van den Berg here",
    a sign-off "Thanks, John"), each with its first name on its own: scrubbing the agent's reply with them
    catches "Hello Maria"."""
    text = text or ""
    found: list[str] = []
    for m in _INTRO_RE.finditer(text):
        if _intro(m) != m.group(0):
            found += _names_of(m)
    for m in _TITLE_RE.finditer(text):
        found += _names_of(m)
    for regex in (_HERE_RE, _SALUTATION_RE):
        for m in regex.finditer(text):
            found += _names_of(m)
    for regex in (_SIGNOFF_RE, _SIGNED_RE):
        for m in regex.finditer(text):
            found += _names_of(m, whole=True)
    for m in _DASH_SIGNED_RE.finditer(text):
        if not _in_list(m):
            found += _names_of(m, whole=True)
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
    sub(_BIRTH_RE, lambda m: m.group("lead") + BIRTH_DATE, BIRTH_DATE)
    sub(_ADDRESS_RE, ADDRESS, ADDRESS)
    sub(_POSTCODE_RE, ADDRESS, ADDRESS)
    sub(_PHONE_RE, _phone, PHONE)
    sub(_LONG_DIGITS_RE, ORDER, ORDER)
    sub(_TITLE_RE, _title, NAME)
    sub(_INTRO_RE, _intro, NAME)
    sub(_HERE_RE, _replace_name, NAME)
    sub(_SALUTATION_RE, _replace_name, NAME)
    sub(_SIGNOFF_RE, lambda m: _replace_name(m, whole=True), NAME)
    sub(_SIGNED_RE, lambda m: _replace_name(m, whole=True), NAME)
    sub(_DASH_SIGNED_RE, _dash_signed, NAME)
    kinds = {p for p in found if p in out}
    kinds |= {p for p in ALL_PLACEHOLDERS if out.count(p) > text.count(p)}
    return out, sorted(kinds)


ALL_PLACEHOLDERS = (EMAIL, PHONE, CARD, ORDER, INVOICE, IBAN, NAME, ADDRESS, BIRTH_DATE)


#: bitext ``entity_type`` -> placeholder for its ``entity_value``
BITEXT_ENTITY_PLACEHOLDERS = {
    "order_id": ORDER,
    "invoice_id": INVOICE,
    "person_name": NAME,
}


def scrub_exchange(message: str, reply: str, known: Iterable[tuple[str, str]] = ()) -> tuple[str, str, list[str]]:
    """A customer's message and the reply to it, scrubbed: ``(message, reply, kinds found)``. A name the
    customer gave is scrubbed from the reply too ("Hello Maria, your order ...")."""
    known = [*known, *((name, NAME) for name in names_in(message))]
    message, found_m = scrub_pii(message, known)
    reply, found_r = scrub_pii(reply, known)
    return message, reply, sorted(set(found_m) | set(found_r))
