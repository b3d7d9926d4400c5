"""Which key fact does a question ask for? Facts ranked by meaning, with the KB's own embedding model.

A fact is embedded as its name in words plus its description ("return window days. Days after
delivery within which an item can be returned"), so "What is your return window?" finds
``return_window_days`` even when the retrieved passages talk about something else. Fact vectors
are cached by their text: a new revision that only changes a value costs nothing, a new
description is embedded once. A question is also read without the words no fact uses (see
:func:`_narrowed`), and each fact keeps the better of the two scores.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

import numpy as np

from knowledge.index import Embedder
from knowledge.records import Fact

MAX_CACHED = 5000
#: words a question is asked with; kept when the question is narrowed to the facts' own words
_QUESTION_WORDS = frozenset(
    ["how", "long", "much", "many", "when", "what", "which", "where", "who", "do", "does", "did", "i", "have", "has", "to", "is", "are", "the", "a", "an", "my", "can", "could", "still", "it", "you", "your", "of", "for", "in", "on", "at", "after", "before", "until", "within", "by"])
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _narrowed(question: str, vocabulary: frozenset[str]) -> str:
    """``question`` without the words no fact uses: "How long do I have to return a lamp?" asks what
    "How long do I have to return a?" asks. A named item (lamp, sofa, a colour) otherwise pulls the
    question towards whichever fact's document mentions it, or below every fact's threshold."""
    def keep(m: re.Match[str]) -> str:
        word = m.group(0).lower()
        return m.group(0) if word in vocabulary or word.rstrip("s") in vocabulary or word in _QUESTION_WORDS else ""

    return re.sub(r"\s+(?=[?.!,])", "", re.sub(r"\s{2,}", " ", _WORD.sub(keep, question))).strip()


def fact_text(fact: Fact) -> str:
    """What is embedded for ``fact``: its name in words and its description."""
    words = fact.name.replace("_", " ")
    return f"{words}. {fact.description or ''}".strip()


class FactMatcher:
    """Ranks in-force facts against a question by cosine similarity."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def rank(self, question: str, facts: Mapping[str, Fact], k: int = 3) -> list[tuple[Fact, float]]:
        """The ``k`` facts whose meaning is closest to ``question``, best first, with their cosine."""
        if not facts or not question.strip():
            return []
        items = list(facts.values())
        texts = [fact_text(f) for f in items]
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            vecs = self.embedder.texts(missing)
            with self._lock:
                if len(self._vectors) + len(missing) > MAX_CACHED:
                    self._vectors.clear()
                self._vectors.update(zip(missing, vecs, strict=True))
        with self._lock:
            matrix = np.stack([self._vectors[t] for t in texts])
        question = question[:2000]
        scores = matrix @ self.embedder.query(question)
        vocabulary = frozenset(w.lower() for t in texts for w in _WORD.findall(t))
        narrowed = _narrowed(question, vocabulary)
        if narrowed and narrowed != question:
            # each fact keeps the better of the two readings
            scores = np.maximum(scores, matrix @ self.embedder.query(narrowed))
        order = np.argsort(-scores)[:k]
        return [(items[i], float(scores[i])) for i in order]
