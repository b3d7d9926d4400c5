"""A deterministic bag-of-words embedding for tests that exercise index code, not ranking quality.

Each word is hashed into one of ``dim`` buckets and the vector is L2-normalised: texts that share
words are close, so ranking tests still mean something, and nothing is loaded. It has the three
methods LlamaIndex's embedding interface calls.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np


class HashingEmbedding:
    def __init__(self, dim: int = 128, model_name: str = "hashing-test-embedding") -> None:
        self.dim = dim
        self.model_name = model_name

    def _vec(self, text: str) -> list[float]:
        v = np.zeros(self.dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return (v / (float(np.linalg.norm(v)) or 1.0)).tolist()

    def get_text_embedding_batch(self, texts: list[str], **_: Any) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def get_query_embedding(self, text: str) -> list[float]:
        return self._vec(text)

    def get_text_embedding(self, text: str) -> list[float]:
        return self._vec(text)
