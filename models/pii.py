"""Personal data scrubbing: replace it with ``{{Placeholders}}`` before anything is stored or trained on.

What is recognised (in this order, so a longer pattern wins over a shorter one):

* e-mail addresses -> ``{{Customer Email}}``
* IBANs -> ``{{Bank Account}}``
* payment card numbers (13-19 digits, grouped like a card or passing the Luhn check with a card
  prefix) -> ``{{Card Number}}``; a card's security code ("CVV 123", "CVC: 1234", "security code is 123")
  -> ``{{Card Security Code}}``
* order / purchase / invoice references (a keyword followed by an id with digits, ``#12345``, with the
  letters before it: "order LK 42710343"; in Dutch, German, French and Spanish too: "bestelling",
  "bestelnummer", "Bestellung", "Bestellnummer", "commande", "pedido", "factuur", "Rechnung", "facture",
  "factura") -> ``{{Order Number}}`` / ``{{Invoice Number}}``
* dates of birth ("my date of birth is 12/03/1985", "DOB: 1985-03-12", "born on 3 May 1985")
  -> ``{{Date of Birth}}`` (other dates are kept)
* postal addresses: a street and house number ("Keizersgracht 123", "Van Baerlestraat 12-2",
  "12 Baker Street", "Hauptstraße 5"), Dutch postcodes ("1015 CJ") and UK postcodes ("SW1A 1AA"), with
  the town after a postcode at the end of a sentence -> ``{{Customer Address}}``
* phone numbers (``+`` or separators, 9-15 digits: "+31 20 555 0142", "(415) 555-0132", and national
  numbers with the trunk prefix 0 in 2-6 groups: "06 12 34 56 78", "06-12345678", "07700 900123"; not a
  date with a time after it) -> ``{{Customer Phone}}``
* any remaining run of 8+ digits, with 2-4 capital letters before it ("LK 42710343") -> ``{{Order Number}}``
  (in support tickets it is nearly always one)
* names -> ``{{Customer Name}}``: after "my name is" / "this is" / "I'm" (and "mijn naam is", "ik ben",
  "ich heiße", "mein Name ist", "ich bin", "je m'appelle", "je suis", "me llamo", "soy"...; on the phone "u
  spreekt met", "hier is", "hier ist", and "met" after a Dutch greeting or at the start of a line when the name
  ends the clause: "Goedemiddag, met Pieter de Vries", "Met Pieter de Vries." but not "Ik kom met de trein"),
  before "here" ("Pieter here"), after a title ("Mr. Smith", "Mrs", "Ms", "Dr", "Mevr", "Herr", "Frau", "Madame",
  "Señor"...), after a salutation followed by a comma or the line's end ("Dear Sarah,", "Hi Sarah,",
  "Hello Tom", "Beste Jan,", "Liebe Anna,", "Bonjour Élodie,", "Hola María,"), in a sign-off ("Thanks,\nAnna
  Berg", "Warm regards, Tom from Brightnest", "Groetjes, Jan", "Groet, Peter", "Gr. Peter",
  "Mit freundlichen Grüßen\nJürgen Müller",
  "Cordialement,\nÉlodie Dupont", "Saludos, María García"; a line or two under the name, such as the
  company, may follow), a last line "Tom from Brightnest", and a last line "- Sarah" (not the last item of
  a list: after a line ending in a colon or another list item). A name is capitalised words of any Latin
  alphabet ("Ólafur") on one line, with surname particles between them ("Anna de Vries", "Pieter van den
  Berg", "Ludwig von Mises", "Jan ter Horst"). Words that are not names are never taken for one: "Dear
  customer", "Hi there", "Dear Sir", "Hi Team", "Help Centre", "Liebe Kunden", "Ich bin Kunde", weekdays
  and months.

A customer's message and the agent's reply to it are scrubbed together (:func:`scrub_exchange`): the names
the customer gave are scrubbed from the reply too (:func:`names_in`), and the names the reply greets the
customer by ("Hallo Herr Müller", "Hi Jan,") from the message (:func:`addressed_names`), with the surname that
follows a greeted first name there ("Hallo Pieter," and "met Pieter de Vries": :func:`whole_names`). In the reply, the
company's own phone numbers and e-mail addresses (its KB's facts, :func:`company_contacts`, or a number
the reply gives as the company's: "call us on ...") become the KB's slots (``{{Customer Support Phone
Number}}``), not the customer's, and the agent's own sign-off ("Kind regards,\nPeter de Vries") is left out.

It is a heuristic: it favours scrubbing too much over leaking (a long product code may become an
order number). Known values (e.g. the bitext ``entity_value`` column) can be passed explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

EMAIL = "{{Customer Email}}"
PHONE = "{{Customer Phone}}"
CARD = "{{Card Number}}"
ORDER = "{{Order Number}}"
INVOICE = "{{Invoice Number}}"
IBAN = "{{Bank Account}}"
NAME = "{{Customer Name}}"
ADDRESS = "{{Customer Address}}"
BIRTH_DATE = "{{Date of Birth}}"
SECURITY_CODE = "{{Card Security Code}}"
#: the company's own contact details in an agent's reply: the KB slots the sample KB and the public tickets
#: name them with (a KB fact's own first placeholder wins, see :func:`company_contacts`)
SUPPORT_PHONE = "{{Customer Support Phone Number}}"
SUPPORT_EMAIL = "{{Customer Support Email}}"

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_CARD_GROUPED_RE = re.compile(r"\b\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}\b")
_DIGITS_RE = re.compile(r"\b\d{13,19}\b")
_REF_RE = re.compile(
    r"(?P<kw>\b(?:order|purchase|invoice|bill|receipt|tracking|shipment|parcel"
    # the same in Dutch, German, French and Spanish ("Mijn bestelling LK-10023", "Meine Bestellung LK-10023")
    r"|bestelling|bestelnummer|bestellung|bestellnummer|commande|pedido"
    r"|factuur|factuurnummer|rechnung|rechnungsnummer|facture|factura)s?"
    r"(?:\s+(?:number|no\.?|num|id|ref(?:erence)?|code|nummer|nr\.?))?\s*"
    r"(?:(?:is|ist|est|es)\s+|:\s*|(?:nr|n[°º])\.?\s*)?)"
    # (letters before the id's digits are part of it: "order LK 42710343")
    r"(?P<id>#?\s?(?:(?-i:[A-Z]{1,4})[ ](?=\d))?(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,})",
    re.IGNORECASE,
)
# an IBAN: country code, check digits, 11-30 letters and digits, often in groups of four
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_HASH_ID_RE = re.compile(r"(?<![\w{])#\s?\d{4,}\b")
_PHONE_RE = re.compile(
    r"(?<![\w{])(?:\+\d[\d ().-]{7,}\d"
    # a national number: the trunk prefix 0 and an area or mobile code, then 1-5 more groups ("06 12 34 56 78",
    # "06-12345678", "07700 900123", "020 555 0142"); tried before the shorter shape below, which would
    # take "06 12 34 56" and leave "78"
    r"|0\d{1,4}(?:[ .-]\d{2,8}){1,5}"
    r"|\(?\d{2,4}\)?[ .-]\d{2,4}[ .-]\d{2,5}(?:[ .-]\d{2,5})?)(?!\w)"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")
# a date (and a time after it) is not a phone number: "05.12.24 14.30", "05-12-2024 1430"
_DATE_FIRST_RE = re.compile(r"^\d{1,2}([./-])\d{1,2}\1\d{2,4}(?:\s|$)")
# an id of 8+ digits, with the letters before it ("LK 42710343", "LK-42710343"): not "LK {{Order Number}}"
_LONG_DIGITS_RE = re.compile(
    r"(?<![\w{])(?:(?!(?:ID|NR|NO|REF|TEL|FAX|EUR|USD|GBP)\b)(?-i:[A-Z]{2,4})[ -]?)?\d{8,}(?!\w)"
)
# a card's security code ("CVV 123", "CVC: 1234", "security code is 123")
_SECURITY_CODE_RE = re.compile(
    r"(?P<lead>\b(?:cvv2?|cvc2?|cvn|cid|csc|(?:card\s+)?(?:security|verification)\s+(?:code|number|value)"
    r"|beveiligingscode|sicherheitscode|prüfnummer|cryptogramme)\b[\s:#=]*(?:is\s+|was\s+|-\s*)?)"
    r"(?P<code>\d{3,4})(?![\d/.,:-]?\d)",
    re.IGNORECASE,
)
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
# a name: up to three capitalised words on one line, with particles between them ("Peter\nLarkspur Team" is a
# name and the line under it, not a three-word name)
_NAME_SEQ = rf"{_NAME_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]+)*{_NAME_WORD}){{0,2}}"
# "my name is" in English, Dutch, German, French and Spanish
_INTRO_LEADS = (
    r"my name is|my name's|name is|this is|i am|i'm|mijn naam is|ik ben|ik heet|mein name ist|ich bin"
    r"|ich hei(?:ß|ss)e|je m['’]appelle|je suis|mon nom est|me llamo|mi nombre es|soy"
    # on the phone: "U spreekt met Eva Bakker", "hier is Pieter de Vries", "hier ist Jürgen Müller"
    r"|u spreekt met|je spreekt met|spreekt u met|hier is|hier ist|je parle avec|vous parlez avec"
)
_INTRO_RE = re.compile(
    rf"\b(?P<lead>{_INTRO_LEADS})\s+(?P<name>{_NAME_SEQ})",
    re.IGNORECASE,
)
# the Dutch phone greeting "met Pieter de Vries": after a greeting ("Goedemiddag, met Pieter de Vries"), or
# at the start of the message or a line when the name ends the clause ("Met Pieter de Vries. Mijn pakket...");
# not "Ik kom met de trein", "Ik ga met Jan naar de winkel"
# (Dutch greetings only: not "Fijne dag met Kerst", nor the English "This morning met Tom")
_GREETINGS = (r"hallo|hoi|hi|hey|hello|goedendag|goeiedag|goedemorgen|goedemiddag|goedenavond|goeiemorgen"
              r"|goeiemiddag|goeienavond")
_MET_RES = (
    re.compile(rf"(?P<lead>\b(?:{_GREETINGS})[ \t]*[,!.]?[ \t]*met[ \t]+)(?P<name>{_NAME_SEQ})", re.IGNORECASE),
    re.compile(rf"(?P<lead>^[ \t]*met[ \t]+)(?P<name>{_NAME_SEQ})(?=[ \t]*(?:[,.!;:\n]|$)|[ \t]+hier\b)",
               re.IGNORECASE | re.MULTILINE),
)
# the closing words of a letter before the writer's name, in English, Dutch, German, French and Spanish
_SIGNOFF_LEADS = (
    r"thanks(?: again)?|thank you|many thanks|with thanks|regards|best regards|kind regards|warm regards"
    r"|warmest regards|best wishes|all the best|best|cheers|sincerely|yours sincerely|yours truly|yours"
    r"|take care|greetings|br"
    r"|groeten|groetjes|groet|gr|(?:met )?(?:vriendelijke|hartelijke) groet(?:en)?|mvg|hoogachtend|bedankt"
    r"|alvast bedankt"
    r"|dank (?:je|u)(?: wel)?|dankjewel|dankuwel"
    r"|(?:viele|liebe|beste|freundliche|herzliche|schöne) gr(?:ü|u)(?:ß|ss)e|gr(?:ü|u)(?:ß|ss)e|gru(?:ß|ss)"
    r"|mit (?:freundlichen|besten|herzlichen) gr(?:ü|u)(?:ß|ss)en|mfg|lg|vg|danke(?: schön)?|vielen dank"
    r"|besten dank|hochachtungsvoll"
    r"|cordialement|bien cordialement|bien à vous|(?:sincères |meilleures )?salutations|merci(?: beaucoup)?"
    r"|amicalement|bonne journée"
    r"|saludos(?: cordiales)?|un saludo|un cordial saludo|atentamente|cordialmente|(?:muchas )?gracias"
    r"|un abrazo"
)
_SIGNOFF_RE = re.compile(
    rf"(?P<lead>\b(?:{_SIGNOFF_LEADS})\s*[,!.\-]?\s*\n?\s*(?:[-–—]\s*)?)"
    rf"(?P<name>{_NAME_SEQ})(?P<rest>(?:[ \t]+(?:from|at|@)[ \t]+[^\n]{{1,60}}?)?[ \t]*[.!]?"
    # up to two short lines under the name: a job title, the company ("Kind regards,\nPeter\nLarkspur Care")
    rf"(?:[ \t]*\n[ \t]*[^\n?]{{1,60}}?){{0,2}}\s*)$",
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
_TITLES = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Mevr", "Mevrouw", "Dhr", "Meneer", "Heer", "Herr", "Frau",
           "Mme", "Mlle", "Monsieur", "Madame", "Mademoiselle", "Señor", "Señora", "Señorita", "Sr", "Sra", "Srta",
           "mevrouw", "meneer", "heer", "monsieur", "madame", "señor", "señora")
_TITLE_RE = re.compile(
    r"(?<![\w{])(?:" + "|".join(_TITLES) + rf")\.?\s+(?P<particles>(?:{_PARTICLE}\s+)*)(?P<name>{_NAME_SEQ})"
)
_SALUTATION_RE = re.compile(
    rf"(?P<lead>\b(?i:dear|hi|hello|hey|hiya|hallo|hoi|beste|lieve|geachte|good (?:morning|afternoon|evening)|morning"
    rf"|goedemorgen|goedemiddag|goedenavond|liebe|lieber|guten (?:tag|morgen|abend)|moin|servus|bonjour|bonsoir"
    rf"|salut|cher|chère|hola|buenos días|buenas tardes|buenas noches|estimado|estimada|querido|querida)"
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
    # German nouns are capitalised: "Ich bin Kunde seit 2020" names no one
    "kunde", "kundin", "neukunde", "neukundin", "stammkunde", "stammkundin", "student", "studentin", "mitglied",
    "rentner", "rentnerin", "käufer", "käuferin", "empfänger", "empfängerin", "inhaber", "inhaberin", "ihr", "ihre",
    "sehr", "seit", "froh", "enttäuscht", "verärgert",
    # "Hier ist Bestellung 123": German nouns after "hier ist"
    "bestellung", "bestellnummer", "rechnung", "rechnungsnummer", "paket", "lieferung", "sendungsnummer",
    "foto", "screenshot", "nochmal", "noch", "alles", "nichts", "folgendes",
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
    # the same in Dutch, German, French and Spanish ("Liebe Grüße, Jürgen": "Grüße" is not a name)
    "klant", "klanten", "kunden", "cliente", "clientes", "clienta", "équipe", "equipe", "equipo", "zusammen",
    "allemaal", "iedereen", "todos", "tous", "monsieur", "madame", "mademoiselle", "señor", "señora", "herr", "frau",
    "heer", "mevrouw", "meneer", "grüße", "grüsse", "gruß", "gruss", "groeten", "groetjes", "groet", "salutations",
    "saludos", "saludo", "cordialement", "gracias", "merci", "danke", "bedankt", "dank", "schön", "vielmals", "beaucoup",
    "wel", "alvast", "antemano", "cordiales", "cordial", "buenos", "buenas", "días", "dias", "tardes", "noches",
    "journée", "soirée", "vriendelijke", "hartelijke", "freundlichen", "muchas", "mucho", "spoed",
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
    if not 9 <= len(digits) <= 15 or _DATE_RE.match(raw.strip()) or _DATE_FIRST_RE.match(raw):
        return raw
    return PHONE


def _ref(match: re.Match[str]) -> str:
    kw = match.group("kw")
    placeholder = (INVOICE if re.match(r"(invoice|bill|receipt|factu|rechnung)", kw.strip(), re.IGNORECASE)
                   else ORDER)
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
    for regex in (*_MET_RES, _HERE_RE, _SALUTATION_RE):
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
    sub(_SECURITY_CODE_RE, lambda m: m.group("lead") + SECURITY_CODE, SECURITY_CODE)
    sub(_REF_RE, _ref, ORDER)
    sub(_HASH_ID_RE, ORDER, ORDER)
    sub(_BIRTH_RE, lambda m: m.group("lead") + BIRTH_DATE, BIRTH_DATE)
    sub(_ADDRESS_RE, ADDRESS, ADDRESS)
    sub(_POSTCODE_RE, ADDRESS, ADDRESS)
    sub(_PHONE_RE, _phone, PHONE)
    sub(_LONG_DIGITS_RE, ORDER, ORDER)
    sub(_TITLE_RE, _title, NAME)
    sub(_INTRO_RE, _intro, NAME)
    for regex in _MET_RES:
        sub(regex, _replace_name, NAME)
    sub(_HERE_RE, _replace_name, NAME)
    sub(_SALUTATION_RE, _replace_name, NAME)
    sub(_SIGNOFF_RE, lambda m: _replace_name(m, whole=True), NAME)
    sub(_SIGNED_RE, lambda m: _replace_name(m, whole=True), NAME)
    sub(_DASH_SIGNED_RE, _dash_signed, NAME)
    kinds = {p for p in found if p in out}
    kinds |= {p for p in ALL_PLACEHOLDERS if out.count(p) > text.count(p)}
    return out, sorted(kinds)


ALL_PLACEHOLDERS = (EMAIL, PHONE, CARD, SECURITY_CODE, ORDER, INVOICE, IBAN, NAME, ADDRESS, BIRTH_DATE)


#: bitext ``entity_type`` -> placeholder for its ``entity_value``
BITEXT_ENTITY_PLACEHOLDERS = {
    "order_id": ORDER,
    "invoice_id": INVOICE,
    "person_name": NAME,
}


# -- the company's own contact details and the agent's own name, in an agent's reply ------------------------

_PHONE_VALUE_RE = re.compile(r"\+?[\d ().\-/]+")
# what may be a phone number in a reply: the shapes _PHONE_RE knows, and 9-15 digits written without gaps
_PHONE_CANDIDATE_RE = re.compile(rf"{_PHONE_RE.pattern}|(?<![\w{{])\+?\d{{9,15}}(?!\w)")
# "call us on", "ring us at", "our phone number is", "bel ons op", "rufen Sie uns unter": the company's number
_US_PHONE_CUE = re.compile(
    r"(?:\b(?:call|ring|phone|reach|contact|text|whatsapp|bel|bellen|rufen\s+sie|appelez|llámanos|llamenos)"
    r"\s+(?:us|ons|uns|nous)(?:\s+(?:back|directly|free|today|anytime|any\s+time|gerust|gratis))?"
    r"|\b(?:our|onze|ons|unsere?|notre|nuestro)\s+(?:[\w-]+\s+){0,3}?"
    r"(?:number|line|hotline|phone|telephone|nummer|telefoonnummer|telefonnummer|numéro|número))"
    r"\s*(?:is|on|at|op|unter|au|al|:|-)?\s*[:(]?\s*$",
    re.IGNORECASE,
)
# "e-mail us at", "write to us at", "our e-mail address is": the company's address
_US_EMAIL_CUE = re.compile(
    r"(?:\b(?:e-?mail|mail|write\s+to|contact|reach|message|schrijf|schreiben\s+sie|écrivez)"
    r"\s+(?:us|ons|uns|nous)"
    r"|\b(?:our|onze|ons|unsere?|notre|nuestro)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:e-?mail(?:\s+address)?|address|e-?mailadres|mailadres|adres|e-?mail-?adresse))"
    r"\s*(?:is|at|on|op|an|à|:|-)?\s*[:(]?\s*$",
    re.IGNORECASE,
)


def _digits_of(phone: str) -> tuple[str, bool]:
    """A written phone number's digits, and whether they start with the country code ("+31 (0)20 ..." ->
    ("31205550142", True); "020 555 0142" -> ("205550142", False): the national number without its 0)."""
    text = phone.replace("(0)", "")
    digits = re.sub(r"\D", "", text)
    if text.strip().startswith("+"):
        return digits, True
    if digits.startswith("00"):
        return digits[2:], True
    return digits.lstrip("0"), False


def _same_phone(written: str, known: str) -> bool:
    """Whether two ways of writing a number are the same number ("020 555 0142" is "+31 20 555 0142")."""
    a, a_intl = _digits_of(written)
    b, b_intl = _digits_of(known)
    if len(a) < 7 or len(b) < 7:
        return False
    if a_intl == b_intl:
        return a == b
    intl, national = (a, b) if a_intl else (b, a)
    return intl.endswith(national) and 1 <= len(intl) - len(national) <= 3


def contact_kind(value: str) -> str | None:
    """``"email"`` or ``"phone"`` when a KB fact's value is an e-mail address or a phone number, else None."""
    value = (value or "").strip()
    if _EMAIL_RE.fullmatch(value):
        return "email"
    digits = re.sub(r"\D", "", value)
    if _PHONE_VALUE_RE.fullmatch(value) and 8 <= len(digits) <= 15 and not _DATE_RE.match(value):
        return "phone"
    return None


def company_contacts(facts: Any, superseded: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(value, "{{Slot}}")`` for each fact whose value is a phone number or an e-mail address: the company's
    own contact details (the sample KB's ``support_phone`` -> ``{{Customer Support Phone Number}}``). The slot
    is the fact's first placeholder (what training prompts and the guardrails name it by), else its name as a
    slot. ``facts``: the KB's facts (``KnowledgeService.facts()``: name -> fact, or a list of facts, fact dicts
    or ``(name, value)`` pairs); ``superseded``: old value -> value now (an earlier revision's phone number is
    the company's too)."""
    from models.prompting import slot_name_for

    items = facts.values() if isinstance(facts, Mapping) else list(facts or [])
    out: list[tuple[str, str]] = []
    for fact in items:
        if isinstance(fact, Mapping):
            name, value, placeholders = fact.get("name"), fact.get("value"), fact.get("placeholders") or ()
        elif isinstance(fact, tuple):
            (name, value), placeholders = fact, ()
        else:
            name, value = getattr(fact, "name", None), getattr(fact, "value", None)
            placeholders = getattr(fact, "placeholders", None) or ()
        value = "" if value is None else str(value).strip()
        if not value or contact_kind(value) is None:
            continue
        slot = next((str(p).strip() for p in placeholders if str(p).strip()), None) or slot_name_for(str(name or ""))
        if slot:
            out.append((value, "{{" + slot + "}}"))
    for old, now in (superseded or {}).items():
        slot = next((s for v, s in out if v == str(now).strip()), None)
        if slot is not None and contact_kind(str(old)):
            out.append((str(old).strip(), slot))
    return out


def _company_in_reply(reply: str, company: list[tuple[str, str]]) -> str:
    """``reply`` with the company's own phone numbers and e-mail addresses as their KB slots: the values the KB
    gives (written in any way: "020 555 0142" for "+31 20 555 0142"), and a number or address the reply gives
    as the company's ("call us on ...", "e-mail us at ...", "our number is ...")."""
    phones = [(v, s) for v, s in company if contact_kind(v) == "phone"]
    emails = {v.lower(): s for v, s in company if contact_kind(v) == "email"}
    phone_slot = phones[0][1] if phones else SUPPORT_PHONE
    email_slot = next(iter(emails.values()), SUPPORT_EMAIL)

    def email(match: re.Match[str]) -> str:
        found = emails.get(match.group(0).lower())
        if found:
            return found
        return email_slot if _US_EMAIL_CUE.search(match.string[max(0, match.start() - 60) : match.start()]) else \
            match.group(0)

    def phone(match: re.Match[str]) -> str:
        raw = match.group(0)
        digits = re.sub(r"\D", "", raw)
        if not 7 <= len(digits) <= 15 or _DATE_RE.match(raw.strip()) or _DATE_FIRST_RE.match(raw):
            return raw
        found = next((s for v, s in phones if _same_phone(raw, v)), None)
        if found:
            return found
        before = match.string[max(0, match.start() - 60) : match.start()]
        return phone_slot if len(digits) >= 9 and _US_PHONE_CUE.search(before) else raw

    reply = _EMAIL_RE.sub(email, reply)
    return _PHONE_CANDIDATE_RE.sub(phone, reply)


def addressed_names(reply: str) -> list[str]:
    """The names an agent's reply addresses the customer by ("Hallo Herr Müller", "Hi Jan,", "Dear Anna de
    Vries"), each with its first name on its own: the customer's, to scrub from their message too."""
    found: list[str] = []
    for m in _TITLE_RE.finditer(reply or ""):
        found += _names_of(m)
    for m in _SALUTATION_RE.finditer(reply or ""):
        found += _names_of(m)
    return list(dict.fromkeys(n for n in found if len(n) >= 2))


def whole_names(text: str, names: Iterable[str]) -> list[str]:
    """The whole names ``text`` gives that start with one of ``names`` (the first names a reply greets the customer
    by): "Hallo Pieter," and a message "met Pieter de Vries" -> "Pieter de Vries", the following capitalised words
    and surname particles as a name has them (:data:`_NAME_SEQ`, up to a word that is not a name), so that the
    surname is not left behind a ``{{Customer Name}}`` for the first name."""
    found: list[str] = []
    for name in names:
        if not name:
            continue
        pattern = re.compile(
            rf"(?<![\w{{]){re.escape(name)}(?:[ \t]+(?:{_PARTICLE}[ \t]+)*{_NAME_WORD}){{1,2}}(?![\w}}])"
        )
        for m in pattern.finditer(text or ""):
            end = _name_end(m.group(0))
            full = " ".join(m.group(0)[:end].split())
            if len(full) > len(name):
                found.append(m.group(0)[:end])
    return list(dict.fromkeys(found))


def _titled_names(text: str) -> list[str]:
    """The names ``text`` gives after a title, with the title ("Mr. Smith", "Herr Müller")."""
    out = []
    for m in _TITLE_RE.finditer(text):
        end = _name_end(m.group("name"))
        if end:
            out.append(m.group(0)[: m.start("name") - m.start() + end])
    return out


def _drop_agent_signoff(reply: str, customer_names: Iterable[str]) -> str:
    """``reply`` without the agent's own sign-off ("Kind regards,\nPeter de Vries", "Tom from Brightnest",
    "- Sarah" at its end). That name is the agent's, not the customer's: scrubbed to ``{{Customer Name}}`` it
    taught the model to sign as the customer, and the bot has no agent's name to give (the guardrails drop a
    sentence with a slot the KB cannot fill), so the sign-off goes. A sign-off naming the customer (a name the
    message gives: "Thanks, Maria") stays, scrubbed."""
    names = {n.casefold() for n in customer_names}
    for regex in (_SIGNOFF_RE, _SIGNED_RE, _DASH_SIGNED_RE):
        match = regex.search(reply)
        if match is None or (regex is _DASH_SIGNED_RE and _in_list(match)):
            continue
        found = _names_of(match, whole=True)
        if not found or any(n.casefold() in names for n in found):
            continue
        kept = reply[: match.start()].rstrip(" \t\n-–—")
        if kept.strip():
            return kept
    return reply


def scrub_exchange(
    message: str, reply: str, known: Iterable[tuple[str, str]] = (), company: Iterable[tuple[str, str]] = ()
) -> tuple[str, str, list[str]]:
    """A customer's message and the agent's reply to it, scrubbed: ``(message, reply, kinds found)``.

    A name the customer gave is scrubbed from the reply too ("Hello Maria, your order ..."), and a name the
    reply addresses the customer by from the message ("Hallo Herr Müller" -> "Müller" in the message). In the
    reply, the company's own phone numbers and e-mail addresses become their KB slots, not the customer's
    (``company``: ``(value, "{{Slot}}")`` pairs, :func:`company_contacts` of the KB; a number or address the
    reply gives as the company's, "call us on ...", counts too), and the agent's own sign-off is left out
    (:func:`_drop_agent_signoff`).
    """
    addressed = addressed_names(reply)
    # "Hallo Pieter," and "met Pieter de Vries" in the message: the whole name, not "{{Customer Name}} de Vries"
    # (before the first name on its own, as known values are replaced in order)
    customer_names = list(dict.fromkeys([*whole_names(message, addressed), *names_in(message), *addressed]))
    # "Herr Müller" before "Müller": the title goes with the name, as scrub_pii's own title rule has it
    titled = [t for text in (message, reply) for t in _titled_names(text or "")]
    known = [*known, *((name, NAME) for name in dict.fromkeys([*titled, *customer_names]))]
    message, found_m = scrub_pii(message, known)
    if reply:
        reply = _drop_agent_signoff(_company_in_reply(reply, list(company)), customer_names)
    reply, found_r = scrub_pii(reply, known)
    return message, reply, sorted(set(found_m) | set(found_r))
