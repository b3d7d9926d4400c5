"""One shared sentence embedding per message, for both the intent and the tone head.

The MiniLM forward pass is the only expensive step of the NLU, so it runs once per message
(``torch.inference_mode``, short ``max_length``, no sentence-transformers ``encode`` overhead)
and its result is cached: the manager re-classifies a follow-up together with the previous
turn, and retries and duplicate messages are common.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EMBED_DIM = 384


class Encoder:
    """Mean-pooled, L2-normalised MiniLM embeddings (identical to sentence-transformers' output)."""

    def __init__(self, model_dir: Path | None = None, *, max_length: int = 64, cache_size: int = 4096,
                 max_threads: int = 2) -> None:
        self.model_dir = model_dir
        self.max_length = max_length
        self.cache_size = cache_size
        self.max_threads = max_threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch

        from knowledge.embeddings import load_sentence_transformer

        if torch.get_num_threads() > self.max_threads:  # 2 shared cores: more threads only thrash
            torch.set_num_threads(self.max_threads)
        # The sentence-transformers object is cached per folder and shared with the retriever,
        # so the weights live in memory once; we only call its tokenizer and transformer directly.
        st = load_sentence_transformer(self.model_dir)
        self._tokenizer = st.tokenizer
        self._model = st[0].auto_model.eval()

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_length)
        with torch.inference_mode():
            hidden = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 token_type_ids=batch.get("token_type_ids")).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().numpy()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed many texts (length-sorted batches, so padding stays small)."""
        self._load()
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._forward([texts[i] or " " for i in idx])
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one message, through an LRU cache."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        self._load()
        vec = self._forward([text or " "])[0]
        vec.setflags(write=False)
        with self._lock:
            self._cache[text] = vec
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vec

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


_shared: dict[str, Encoder] = {}
_shared_lock = threading.Lock()


def shared_encoder(model_dir: Path | None = None) -> Encoder:
    """One encoder (and one cache) per model folder for the whole process."""
    key = str(model_dir) if model_dir is not None else "<default>"
    with _shared_lock:
        enc = _shared.get(key)
        if enc is None:
            enc = _shared[key] = Encoder(model_dir)
        return enc
