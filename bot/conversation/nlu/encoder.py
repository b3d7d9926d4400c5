"""One shared sentence embedding per message, for both the intent and the tone head.

The MiniLM forward pass is the only expensive step of the NLU, so it runs once per message
(``torch.inference_mode``, short ``max_length``, no sentence-transformers ``encode`` overhead)
and its result is cached: the manager re-classifies a follow-up together with the previous
turn, and retries and duplicate messages are common.

Two encoder variants exist; a model folder records which one its heads were trained on:

* ``fp32``: MiniLM as shipped (format-1 model folders);
* ``int8``: the attention projections and the FFN's first (expanding) Linear of every layer
  dynamically quantised to int8, the FFN's output Linear (``intermediate -> hidden``) kept in
  fp32: quantising those six hurt accuracy, the rest costs almost nothing.  ~1.4x faster per
  message.  Because dynamic quantisation scales activations per tensor, a padded batch would
  not give exactly the single-message result, so this variant embeds texts one at a time with
  the same traced graph at training and at inference (train/serve consistency; no padding).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EMBED_DIM = 384
VARIANTS = ("fp32", "int8")
DEFAULT_VARIANT = "int8"


def is_ffn_output(name: str) -> bool:
    """The FFN's output Linear of a BERT layer (``encoder.layer.N.output.dense``), not the attention's."""
    return name.endswith("output.dense") and ".attention." not in name


def quantize_int8(model: Any) -> Any:
    """A dynamically int8-quantised copy of ``model``: every Linear except the FFN output ones."""
    import warnings

    import torch

    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not is_ffn_output(n)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice (the API still works in 2.x)
        return torch.ao.quantization.quantize_dynamic(
            model, {n: torch.ao.quantization.default_dynamic_qconfig for n in names}, dtype=torch.qint8,
            inplace=False)


class Encoder:
    """Mean-pooled, L2-normalised MiniLM embeddings (identical to sentence-transformers' output)."""

    def __init__(self, model_dir: Path | None = None, *, max_length: int = 64, cache_size: int = 4096,
                 max_threads: int = 2, variant: str = "fp32") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown encoder variant {variant!r} (known: {', '.join(VARIANTS)})")
        self.model_dir = model_dir
        self.variant = variant
        self.max_length = max_length
        self.cache_size = cache_size
        self.max_threads = max_threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._single: Any = None  # TorchScript graph for one message (see _trace)
        self._fp32: Any = None  # the shared fp32 module (source of the tone branch's layers)
        self.traced = False

    def _load(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:  # two first requests at once must not load (and trace) twice
            if self._model is None:
                self._load_locked()

    def _load_locked(self) -> None:
        import torch

        from knowledge.embeddings import load_sentence_transformer

        if torch.get_num_threads() > self.max_threads:  # 2 shared cores: more threads only thrash
            torch.set_num_threads(self.max_threads)
        # The sentence-transformers object is cached per folder and shared with the retriever,
        # so the weights live in memory once; we only call its tokenizer and transformer directly.
        st = load_sentence_transformer(self.model_dir)
        self._tokenizer = st.tokenizer
        model = self._fp32 = st[0].auto_model.eval()
        # The int8 copy is this encoder's own; the shared fp32 module (retriever) is untouched.
        self._model = quantize_int8(model) if self.variant == "int8" else model
        self._single = self._trace()

    def _trace(self) -> Any:
        """A frozen TorchScript graph of transformer + mean pooling for ONE unpadded message.

        Measured here it is ~1.5x faster than the eager module per message (Python dispatch is a
        large part of a 6-layer MiniLM's cost at batch size 1).  One message has no padding, so
        no attention mask is needed.  The graph is checked against the eager model on texts of
        several lengths; on any mismatch or error we stay eager.
        """
        import warnings

        import torch

        model = self._model

        class _One(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                out = self.model(input_ids=ids, output_hidden_states=True, return_dict=True)
                pooled = torch.nn.functional.normalize(out.last_hidden_state.mean(1), dim=-1)
                # Every layer's hidden states (the tone branch starts from one of them; free to return).
                return pooled, torch.stack(out.hidden_states, 0)[:, 0]

        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                one = _One().eval()
                example = self._ids("a short example message to trace the model with")
                graph = torch.jit.freeze(torch.jit.trace(one, (example,), check_trace=False))
                for probe in ("hi", "where is my order 12345, it is late and I need it asap please!!"):
                    eager = self._forward([probe])[0]
                    fast = graph(self._ids(probe))[0][0].numpy()
                    if float(np.dot(eager, fast)) < 0.9999:
                        return None
            self.traced = True
            return graph
        except Exception:  # noqa: BLE001 - tracing is an optimisation; eager always works
            return None

    def _ids(self, text: str) -> Any:
        return self._tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_length)["input_ids"]

    def _forward_one(self, text: str) -> np.ndarray:
        return self._forward_one_hidden(text)[0]

    def _forward_one_hidden(self, text: str) -> tuple[np.ndarray, Any]:
        """One message's embedding and all its hidden states (``(layers + 1, tokens, 384)``)."""
        import torch

        with torch.inference_mode():
            if self._single is None:
                ids = self._ids(text)
                out = self._model(input_ids=ids, output_hidden_states=True, return_dict=True)
                pooled = torch.nn.functional.normalize(out.last_hidden_state.mean(1), dim=-1)
                return pooled[0].float().numpy(), torch.stack(out.hidden_states, 0)[:, 0]
            pooled, hidden = self._single(self._ids(text))
            return pooled[0].float().numpy(), hidden

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
        """Embed many texts (fp32: length-sorted batches, so padding stays small; int8: one by one)."""
        self._load()
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        if self.variant == "int8" and self._single is not None:
            for i, text in enumerate(texts):  # exactly what encode_one computes (see module doc)
                out[i] = self._forward_one(text or " ")
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._forward([texts[i] or " " for i in idx])
        return out

    def encode_with_hidden(self, texts: Sequence[str], layer: int) -> tuple[np.ndarray, list[Any]]:
        """Embeddings of many texts plus each one's layer-``layer`` hidden states (one message at a time)."""
        self._load()
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        hidden = []
        for i, text in enumerate(texts):
            out[i], h = self._forward_one_hidden(text or " ")
            hidden.append(h[layer].clone())
        return out, hidden

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one message, through an LRU cache."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        self._load()
        vec = self._forward_one(text or " ")
        self._remember(text, vec)
        return vec

    def encode_one_hidden(self, text: str, layer: int) -> tuple[np.ndarray, Any]:
        """One message's embedding (cached like :meth:`encode_one`) and its layer-``layer`` hidden states.

        Always runs the model (hidden states are not cached); callers cache what they derive.
        """
        self._load()
        vec, hidden = self._forward_one_hidden(text or " ")
        vec = self._remember(text, vec)
        return vec, hidden[layer]

    def _remember(self, text: str, vec: np.ndarray) -> np.ndarray:
        vec.setflags(write=False)
        with self._lock:
            self._cache[text] = vec
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vec

    def fp32_top_layers(self, start: int) -> Any:
        """A trainable fp32 copy of transformer layers ``start..`` (the tone branch starts from it)."""
        self._load()
        return copy.deepcopy(self._fp32.encoder.layer[start:])

    def config(self) -> Any:
        self._load()
        return self._fp32.config

    def cached(self, text: str) -> np.ndarray | None:
        """The embedding of ``text`` if it is in the cache (never runs the model)."""
        with self._lock:
            return self._cache.get(text)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


_shared: dict[str, Encoder] = {}
_shared_lock = threading.Lock()


def shared_encoder(model_dir: Path | None = None, variant: str = "fp32") -> Encoder:
    """One encoder (and one cache) per model folder and variant for the whole process."""
    key = f"{model_dir if model_dir is not None else '<default>'}|{variant}"
    with _shared_lock:
        enc = _shared.get(key)
        if enc is None:
            enc = _shared[key] = Encoder(model_dir, variant=variant)
        return enc
