"""Which key fact does a question ask for? Facts ranked by meaning, with the KB's own embedding model.

A fact is embedded as its name in words plus its description ("return window days. Days after
delivery within which an item can be returned"), so "What is your return window?" finds
``return_window_days`` even when the retrieved passages talk about something else. Fact vectors
are cached by their text: a new revision that only changes a value costs nothing, a new
description is embedded once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from knowledge.index import Embedder
from knowledge.records import Fact

MAX_CACHED = 5000


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
        scores = matrix @ self.embedder.query(question[:2000])
        order = np.argsort(-scores)[:k]
        return [(items[i], float(scores[i])) for i in order]
