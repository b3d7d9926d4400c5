"""Content words and crude stems: how the responder and the guardrail compare a question with the KB."""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"[a-z0-9€%]+")
STOP = {"the", "a", "an", "is", "are", "do", "does", "i", "my", "you", "your", "to", "of", "for", "how", "what",
        "can", "in", "on", "it", "and", "or", "be", "with", "me", "there", "we", "our", "if", "that", "this", "us",
        "from", "at", "by", "about", "into", "as"}


#: the member states of the European Union, as customers name them
EU_MEMBERS = ("Austria", "Belgium", "Bulgaria", "Croatia", "Cyprus", "Czechia", "Czech Republic", "Denmark",
              "Estonia", "Finland", "France", "Germany", "Greece", "Hungary", "Ireland", "Italy", "Latvia",
              "Lithuania", "Luxembourg", "Malta", "Netherlands", "Poland", "Portugal", "Romania", "Slovakia",
              "Slovenia", "Spain", "Sweden")


def terms(text: str) -> set[str]:
    """Content words, plurals folded ("cards" -> "card")."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in _WORD_RE.findall(text.lower()) if w not in STOP and len(w) > 1}


def stem(word: str) -> str:
    """A crude stem, enough to match "Buying a gift card" to "buy" and "Saving a card" to "save"."""
    if word.endswith("ss"):
        return word
    if word.endswith("bly") and len(word) > 5:  # "assembly" is "assemble", "possibly" "possible"
        return word[:-1]
    for suffix in ("ing", "ed", "es", "e", "s"):
        # "using" and "use" both end as "us": two letters are enough after "ing" and "e"
        if word.endswith(suffix) and len(word) - len(suffix) >= (2 if suffix in ("ing", "e") else 3):
            return word[: -len(suffix)]
    return word


def stems(text: str) -> set[str]:
    return {stem(w) for w in terms(re.sub(r"(?i)\be-mail", "email", text))}
