"""Misspelt words read as the knowledge base spells them: "i forgot my pasword" asks about a password.

Customers type fast. "pasword", "downlaod", "adress" match no word of the knowledge base, so the
intent model, the knowledge-base check and the fact and step matching all missed them (QA: "i forgot
my pasword" was asked what it was about, "how do i downlaod my invoice" was told the help pages have
no steps for it). A word is corrected only when

* it is five letters or longer, alphabetic, and not part of an e-mail address, a link or a code;
* neither the knowledge base nor the embedding model's vocabulary knows it, nor a plain form of it
  ("mailed" is "mail" + "ed", "unblock" is "un" + "block"): the tokenizer's whole words are a list of
  common English words, so "vase" and "ottoman" are words, not typos of "case" and "bottom";
* a knowledge-base word of five letters or more (or the singular of one the knowledge base uses in the
  plural) is one edit away. Of several, two neighbours swapped is the likeliest
  slip ("peice" is "piece", not "price"), then a letter left out or added, then a letter changed; among
  equals, the word the knowledge base uses most, when it is used more than the others.

The stored message keeps what the customer wrote; only what the bot reads is corrected.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

_WORD = re.compile(r"[a-z]+")
# a word of letters only, not inside an address, a link, a path, a code or a word with digits
_CANDIDATE = re.compile(r"(?<![\w@./\\-])[A-Za-z]{5,}(?![\w@/\\-]|[.:]\w)")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_LENGTH = 5
# (ending, what the plain form ends with instead): "mailed" is "mail", "expires" "expire", "duplicated" "duplicate"
_ENDINGS = (("s", ""), ("es", ""), ("ed", ""), ("ed", "e"), ("d", ""), ("ing", ""), ("ing", "e"), ("ly", ""),
            ("er", ""), ("ers", ""), ("ers", "e"))
_PREFIXES = ("un", "re")


def edits_by_kind(word: str) -> tuple[set[str], set[str], set[str]]:
    """The strings one edit from ``word``, likeliest slip first: two neighbours swapped; a letter left out
    or added; a letter changed."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1 and b[0] != b[1]}
    changes = {a + c + b[1:] for a, b in splits if b for c in _LETTERS if c != b[0]}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return swaps, deletes | inserts, changes


def edits1(word: str) -> set[str]:
    """Every string one edit from ``word``: a letter deleted, two neighbours swapped, one changed or added."""
    swaps, lengths, changes = edits_by_kind(word)
    return swaps | lengths | changes


@lru_cache(maxsize=4)
def tokenizer_words(model_dir: Path | None) -> frozenset[str]:
    """The whole lower-case words of a WordPiece tokenizer's ``vocab.txt`` (empty when there is none)."""
    if model_dir is None or not (Path(model_dir) / "vocab.txt").is_file():
        return frozenset()
    with open(Path(model_dir) / "vocab.txt", encoding="utf-8") as f:
        return frozenset(w for w in (line.strip() for line in f) if w.isalpha() and w.isascii() and w.islower())


class Speller:
    """Corrects words to the spelling of a vocabulary (see the module's docstring for when)."""

    def __init__(self, vocabulary: Counter[str], known: frozenset[str] = frozenset()) -> None:
        self.vocabulary = vocabulary  # word -> how often the knowledge base uses it
        self.known = known  # words that are right though the knowledge base never uses them

    @classmethod
    def from_texts(cls, texts: Iterable[str], known: frozenset[str] = frozenset()) -> Speller:
        words = Counter(w for t in texts for w in _WORD.findall(t.lower()))
        # "pieces", "cheques" in the KB: "piece" and "cheque" are its words too
        for w, n in list(words.items()):
            if w.endswith("s") and not w.endswith(("ss", "us", "is")) and (one := w[:-1]) not in words:
                words[one] = n
        return cls(words, known)

    def _word(self, w: str) -> bool:
        return w in self.vocabulary or w in self.known

    def is_word(self, w: str) -> bool:
        """Whether ``w`` (lower case) is a word: the KB's, a common one, or a plain form of one ("mailed",
        "expires", "duplicated", "unblock", "resent": the tokenizer's whole words hold few inflections, and
        BANKING77's queries had "mailed" read as "failed" and "unblock" as "unlock")."""
        if self._word(w):
            return True
        for ending, base in _ENDINGS:
            if w.endswith(ending) and len(w) - len(ending) >= 3 and self._word(w[: -len(ending)] + base):
                return True
        return any(w.startswith(p) and len(w) - len(p) >= 4 and self._word(w[len(p):]) for p in _PREFIXES)

    def correct_word(self, word: str) -> str | None:
        """The vocabulary's spelling of ``word`` (lower case), or None when it is right or unclear."""
        w = word.lower()
        if len(w) < MIN_LENGTH or self.is_word(w):
            return None
        for kind in edits_by_kind(w):
            counts = sorted(((self.vocabulary[c], c) for c in kind if len(c) >= MIN_LENGTH and c in self.vocabulary),
                            reverse=True)
            if counts:
                return None if len(counts) > 1 and counts[0][0] == counts[1][0] else counts[0][1]
        return None

    def correct(self, text: str) -> str:
        """``text`` with its misspelt words corrected, in the customer's case ("Pasword" -> "Password")."""

        def fix(m: re.Match[str]) -> str:
            word = m.group(0)
            right = self.correct_word(word)
            if right is None:
                return word
            if word.isupper():
                return right.upper()
            return right.capitalize() if word[0].isupper() else right

        return _CANDIDATE.sub(fix, text)


class KnowledgeSpeller:
    """A :class:`Speller` over the documents in force, rebuilt when the knowledge base changes.

    ``texts`` returns the current documents' texts; ``generation`` a number that changes with them
    (the index's snapshot generation), read on every call and cheap."""

    def __init__(self, texts: Callable[[], Iterable[str]], generation: Callable[[], object],
                 known: frozenset[str] = frozenset()) -> None:
        self._texts = texts
        self._generation = generation
        self._known = known
        self._lock = threading.Lock()
        self._built: tuple[object, Speller] | None = None

    def speller(self) -> Speller:
        gen = self._generation()
        built = self._built
        if built is not None and built[0] == gen:
            return built[1]
        with self._lock:
            if self._built is None or self._built[0] != gen:
                self._built = (gen, Speller.from_texts(self._texts(), self._known))
            return self._built[1]

    def correct(self, text: str) -> str:
        return self.speller().correct(text)
