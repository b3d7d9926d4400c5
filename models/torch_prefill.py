"""Cold prompts prefilled by PyTorch, their KV cache handed to llama.cpp, which decodes the reply.

Why: on two cores neither engine has both halves. PyTorch's bf16 matrix kernels prefill a 526-token
prompt in about 0.36 s where llama.cpp's Q8_0 kernels need 0.75 s; llama.cpp decodes four times
faster than PyTorch's ``generate``. A prompt that shares little with anything in the cache (a new
conversation, a new knowledge-base context) is therefore run through the PyTorch model once, and
llama.cpp decodes from the keys and values PyTorch computed.

How: llama.cpp can load a sequence's KV cells from bytes (``llama_state_seq_set_data``). The byte
layout is learned from the llama.cpp build itself (:class:`SeqStateLayout` reads back the state of a
two-token sequence and checks every field), so a build whose layout differs is detected and the
engine keeps prefilling in llama.cpp. The keys need one change: the GGUF conversion permutes the
rows of ``k_proj`` so that llama.cpp's rotary embedding pairs neighbouring dimensions
(``x[2i], x[2i+1]``) where Hugging Face pairs the two halves (``x[i], x[i + d/2]``); the
interleave below puts PyTorch's rotated keys in llama.cpp's order. Values go over unchanged.

The PyTorch model runs the same adapter as llama.cpp, merged into bf16 weights with peft. Its
numbers differ from llama.cpp's Q8_0 ones by rounding only: on the benchmark prompt the keys
correlate 0.9999 (first layer) and 0.9998 (last), and the first token is the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import Unavailable

log = logging.getLogger(__name__)

GGML_TYPE_F16 = 1
_HEADER_BYTES = 8  # written before the stream count; copied from what the build itself writes


class LayoutMismatch(Unavailable):
    """llama.cpp's sequence-state bytes are not laid out as this module writes them."""


@dataclass(frozen=True)
class SeqStateLayout:
    """How this llama.cpp build lays out one sequence's KV cells (learned by :meth:`probe`)."""

    header: bytes
    n_layer: int
    k_row_bytes: int  # one cell's keys in one layer, f16
    v_trans: bool  # values stored one dimension per row (flash attention off), else one cell per row
    v_width: int  # values per cell per layer

    @classmethod
    def parse(cls, data: bytes, n_cells: int, seq: int) -> SeqStateLayout:
        """The layout of ``data``, the state of a sequence ``seq`` holding positions ``0..n_cells-1``."""
        def u32(at: int) -> int:
            return int(np.frombuffer(data, np.uint32, 1, at)[0])

        def fail(what: str) -> LayoutMismatch:
            return LayoutMismatch(f"llama.cpp's sequence state differs from the expected layout: {what}",
                                  code="state_layout")

        at = _HEADER_BYTES
        if len(data) < at + 8 or u32(at) != 1 or u32(at + 4) != n_cells:
            raise fail("stream or cell count")
        at += 8
        meta = np.frombuffer(data, np.int32, 3 * n_cells, at).reshape(n_cells, 3)
        if not ((meta[:, 0] == np.arange(n_cells)).all() and (meta[:, 1] == 1).all() and (meta[:, 2] == seq).all()):
            raise fail("cell positions")
        at += meta.nbytes
        v_trans, n_layer = u32(at), u32(at + 4)
        at += 8
        k_row = None
        for _ in range(n_layer):
            k_type, row = u32(at), int(np.frombuffer(data, np.uint64, 1, at + 4)[0])
            if k_type != GGML_TYPE_F16 or (k_row is not None and row != k_row):
                raise fail(f"key type {k_type} / row {row}")
            k_row = row
            at += 12 + n_cells * row
        v_width = None
        for _ in range(n_layer):
            if v_trans:
                v_type, element, width = u32(at), u32(at + 4), u32(at + 8)
                at += 12 + n_cells * width * element
            else:
                v_type, row = u32(at), int(np.frombuffer(data, np.uint64, 1, at + 4)[0])
                element, width = 2, row // 2
                at += 12 + n_cells * row
            if v_type != GGML_TYPE_F16 or element != 2 or (v_width is not None and width != v_width):
                raise fail(f"value type {v_type} / width {width}")
            v_width = width
        if at != len(data) or not n_layer or k_row is None or v_width is None:
            raise fail(f"{len(data)} bytes, {at} accounted for")
        return cls(bytes(data[:_HEADER_BYTES]), n_layer, k_row, bool(v_trans), v_width)

    def blob(self, keys: list[Any], values: list[Any], seq: int) -> bytes:
        """The state bytes of a sequence ``seq`` holding ``keys`` / ``values`` at positions ``0..n-1``.

        ``keys`` and ``values`` are one float16 array per layer, ``(n_cells, width)``, keys already in
        llama.cpp's dimension order.
        """
        n = int(keys[0].shape[0])
        meta = np.empty((n, 3), np.int32)
        meta[:, 0], meta[:, 1], meta[:, 2] = np.arange(n), 1, seq
        parts = [self.header, np.array([1, n], np.uint32).tobytes(), meta.tobytes(),
                 np.array([int(self.v_trans), self.n_layer], np.uint32).tobytes()]
        row_head = np.array([GGML_TYPE_F16], np.int32).tobytes()
        for k in keys:
            parts += [row_head, np.array([self.k_row_bytes], np.uint64).tobytes(), np.ascontiguousarray(k).tobytes()]
        for v in values:
            if self.v_trans:
                parts += [row_head, np.array([2, self.v_width], np.uint32).tobytes(), np.ascontiguousarray(v.T).tobytes()]
            else:
                parts += [row_head, np.array([2 * self.v_width], np.uint64).tobytes(), np.ascontiguousarray(v).tobytes()]
        return b"".join(parts)


def interleave_rotary(k: Any) -> Any:
    """Hugging Face's rotary half-split order of the last dimension -> llama.cpp's neighbouring pairs."""
    import torch

    half = k.shape[-1] // 2
    return torch.stack((k[..., :half], k[..., half:]), dim=-1).reshape(k.shape)


def _cache_layers(cache: Any) -> list[tuple[Any, Any]]:
    """``(keys, values)`` per layer of a transformers cache, each ``(batch, kv_heads, tokens, head_dim)``."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]


def default_dtype() -> str:
    """bf16 where the CPU computes it natively (AVX-512 BF16 or AMX), else float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return "float32"
    return "bfloat16" if (" avx512_bf16" in flags or " amx_bf16" in flags) else "float32"


def load_merged_model(model_dir: Path, adapter_dir: Path | None, dtype: Any) -> Any:
    """The base model from ``model_dir`` in ``dtype`` with the LoRA in ``adapter_dir`` merged into its weights.

    The weights are read into memory and the adapter is added in place (``W += alpha / r * B @ A``,
    computed in float32, rounded once), so the process holds one copy of the model: loading with
    ``from_pretrained`` and merging with peft kept the safetensors file mapped as well as the merged
    copies, about 400 MB where the weights are 270 MB.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    from models.base import set_offline

    set_offline()
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise Unavailable(f"No safetensors weights in {model_dir}.", code="model_not_found")
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    loaded: set[str] = set()
    for file in files:
        state = load_file(str(file))
        loaded |= set(state)
        incompatible = model.load_state_dict(state, strict=False)
        del state
        if incompatible.unexpected_keys:
            raise Unavailable(f"{file} does not fit the model: {incompatible.unexpected_keys[:3]}",
                              code="model_load_failed")
    model.tie_weights()
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if missing := sorted(set(model.state_dict()) - loaded - tied):
        raise Unavailable(f"{model_dir} lacks weights for {missing[:3]}", code="model_load_failed")
    if adapter_dir is not None:
        from models.gguf_lora import read_peft_lora

        alpha, rank, pairs = read_peft_lora(adapter_dir, config.num_hidden_layers)
        layers = model.model.layers
        with torch.no_grad():
            for (layer, module), ab in pairs.items():
                weight = layers[layer].get_submodule(module).weight
                delta = torch.from_numpy(ab["B"]) @ torch.from_numpy(ab["A"])
                weight.copy_((weight.float() + (alpha / rank) * delta).to(weight.dtype))
    return model.eval()


class TorchPrefiller:
    """The base model in PyTorch with the running adapter merged in; prefills prompts for llama.cpp.

    ``model_dir`` is the converted Hugging Face folder of the same base model llama.cpp runs;
    ``adapter_dir`` maps an adapter id to its peft folder. One adapter is merged at a time: a
    different one reloads the base weights and merges it (about a second), as llama.cpp's own swap
    of merged files does, and only between batches.
    """

    def __init__(self, model_dir: Path | str, adapter_dir: Callable[[str], Path], *, threads: int = 2,
                 dtype: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.adapter_dir = adapter_dir
        self.threads = threads
        self.dtype_name = dtype or default_dtype()
        self._model: Any = None
        self._key: tuple[str | None, str | None] | None = None  # (adapter id, fingerprint) merged in
        self._lock = threading.Lock()
        self.prefills = 0

    @property
    def adapter_key(self) -> tuple[str | None, str | None] | None:
        return self._key

    def prepare(self, adapter_id: str | None, fingerprint: str | None = None) -> None:
        """Have ``adapter_id`` (with files of ``fingerprint``) merged in; the base model for None."""
        key = (adapter_id, fingerprint if adapter_id is not None else None)
        with self._lock:
            if self._key == key and self._model is not None:
                return
            import torch

            self._model = None  # free the old weights before loading the new ones
            model = load_merged_model(self.model_dir, None if adapter_id is None else self.adapter_dir(adapter_id),
                                      getattr(torch, self.dtype_name))
            with torch.inference_mode():  # the first forward pass sets up the CPU kernels (~0.3 s)
                model(torch.arange(32).unsqueeze(0), use_cache=True, logits_to_keep=1)
            self._model, self._key = model, key
            log.info("PyTorch prefill runs %s%s in %s", self.model_dir.name,
                     f" + {adapter_id}" if adapter_id else "", self.dtype_name)

    def prefill(self, ids: list[int], layout: SeqStateLayout, seq: int) -> tuple[np.ndarray, bytes]:
        """Run ``ids`` through the model: (float32 logits after the last token, llama.cpp state bytes)."""
        import torch

        with self._lock:
            model = self._model
            if model is None:
                raise Unavailable("The PyTorch prefill model is not loaded.", code="generator_failed")
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            with torch.inference_mode():
                out = model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
                cache = getattr(out, "cache", None)
                layers = _cache_layers(cache if cache is not None else out.past_key_values)
                if len(layers) != layout.n_layer:
                    raise LayoutMismatch(f"PyTorch has {len(layers)} layers, llama.cpp {layout.n_layer}.",
                                         code="state_layout")
                n = len(ids)
                keys = [interleave_rotary(k[0]).transpose(0, 1).reshape(n, -1).to(torch.float16).numpy()
                        for k, _ in layers]
                values = [v[0].transpose(0, 1).reshape(n, -1).to(torch.float16).numpy() for _, v in layers]
                logits = out.logits[0, -1].float().numpy()
            self.prefills += 1
        if keys[0].shape[1] * 2 != layout.k_row_bytes or values[0].shape[1] != layout.v_width:
            raise LayoutMismatch(
                f"PyTorch's key/value widths ({keys[0].shape[1]}, {values[0].shape[1]}) are not llama.cpp's "
                f"({layout.k_row_bytes // 2}, {layout.v_width}).", code="state_layout")
        return logits, layout.blob(keys, values, seq)

    def close(self) -> None:
        with self._lock:
            self._model, self._key = None, None
