"""Cold prompts prefilled by PyTorch, their KV cache handed to llama.cpp, which decodes the reply.

Why: on two cores neither engine has both halves. PyTorch's matrix kernels prefill a 526-token
prompt in about 0.4 s where llama.cpp's Q8_0 kernels need 0.75-0.9 s; llama.cpp decodes four times
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

PyTorch computes every prompt token but the last, with the running adapter added into int8 weights
(:func:`load_int8_body`, about 130 MB); llama.cpp then decodes the last prompt token itself, so the
first reply token's logits are its own. With the reply forced, llama.cpp decoding from these cells
makes its own choice at 96 of 99 positions of three benchmark prompts and at every position where
it leads by more than one logit (``tests/models/test_torch_prefill.py``).
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
    """How this llama.cpp build lays out one sequence's KV cells: :meth:`parse` reads it from a probe
    (:meth:`models.llamacpp.LlamaCppRuntime.seq_state_layout`)."""

    header: bytes
    n_layer: int
    k_row_bytes: int  # one cell's keys in one layer, f16
    v_trans: bool  # values stored one dimension per row (flash attention off), else one cell per row
    v_width: int  # values per cell per layer

    @classmethod
    def parse(cls, data: bytes, n_cells: int, seq: int) -> SeqStateLayout:
        """The layout of ``data``, the state of a sequence ``seq`` holding positions ``0..n_cells-1``."""
        try:
            return cls._parse(data, n_cells, seq)
        except (ValueError, IndexError) as exc:  # numpy read past the end: fewer bytes than the layout needs
            raise LayoutMismatch(f"llama.cpp's sequence state is shorter than the expected layout: {exc}",
                                 code="state_layout") from exc

    @classmethod
    def _parse(cls, data: bytes, n_cells: int, seq: int) -> SeqStateLayout:
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


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise Unavailable(f"No safetensors weights in {model_dir}.", code="model_not_found")
    return files


def _config(model_dir: Path) -> Any:
    from transformers import AutoConfig

    from models.base import set_offline

    set_offline()
    return AutoConfig.from_pretrained(str(model_dir), local_files_only=True)


def _lora_deltas(adapter_dir: Path | None, n_layer: int) -> dict[str, Callable[[], Any]]:
    """``{"layers.3.self_attn.q_proj": delta}`` for every linear layer the LoRA in ``adapter_dir`` changes;
    ``delta()`` computes ``alpha / r * B @ A`` in float32 when called (one layer's worth of memory)."""
    if adapter_dir is None:
        return {}
    import torch

    from models.gguf_lora import read_peft_lora

    alpha, rank, pairs = read_peft_lora(adapter_dir, n_layer)

    def delta(ab: dict[str, Any]) -> Callable[[], Any]:
        return lambda: (alpha / rank) * (torch.from_numpy(ab["B"]) @ torch.from_numpy(ab["A"]))

    return {f"layers.{layer}.{module}": delta(ab) for (layer, module), ab in pairs.items()}


def load_merged_model(model_dir: Path, adapter_dir: Path | None, dtype: Any) -> Any:
    """The whole base model from ``model_dir`` in ``dtype``, the LoRA in ``adapter_dir`` added into its
    weights (``W += alpha / r * B @ A`` in float32, rounded once): what peft's adapter computes."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    config = _config(model_dir)
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    loaded: set[str] = set()
    for file in _weight_files(model_dir):
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
    with torch.no_grad():
        for name, delta in _lora_deltas(adapter_dir, config.num_hidden_layers).items():
            weight = model.model.get_submodule(name).weight
            weight.copy_((weight.float() + delta()).to(weight.dtype))
    return model.eval()


def _int8_rows(weight: Any, delta: Callable[[], Any] | None = None) -> tuple[Any, Any]:
    """``weight`` (plus ``delta()``, in float32) rounded to int8 with one scale per row (``(rows, 1)``).

    One scale per 32 weights (llama.cpp's Q8_0) was measured too: 178 against 175 of 186 teacher-forced
    positions agreed with llama.cpp's own choices (within noise), but it cost 12-60 ms more per
    526-token prefill, and the cold first token was 0.47-0.51 s against 0.43-0.48 s.
    """
    import torch

    rows = weight.shape[0]
    q = torch.empty(weight.shape, dtype=torch.int8)
    scale = torch.empty((rows, 1))
    change = delta() if delta is not None else None  # B @ A, computed once for every block
    # a block of rows at a time keeps the float32 copies small (the token embedding has 49152 rows)
    for start in range(0, rows, 4096):
        block = weight[start : start + 4096].float()
        if change is not None:
            block = block + change[start : start + 4096]
        part = block.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        scale[start : start + 4096] = part
        q[start : start + 4096] = torch.round(block / part).to(torch.int8)
    return q, scale


def load_int8_body(model_dir: Path, adapter_dir: Path | None, dtype: Any) -> Any:
    """The decoder of the base model in ``model_dir`` (no output head), the LoRA in ``adapter_dir`` added,
    with weights kept as int8 and computed in ``dtype``.

    Every linear layer and the token embedding keep one int8 per weight and a scale per row, and
    are widened to ``dtype`` when used: about 130 MB for SmolLM2-135M's decoder where bf16 took 270 MB
    with the head, for about 30 ms more per 526-token prefill here. A scale per row is about as fine
    as llama.cpp's Q8_0 (a scale per 32 weights), which decodes from these keys and values anyway.
    The adapter is added in float32 before the one rounding. The weights are read one tensor at a
    time into a skeleton on the meta device, so the whole model in bf16 never sits in memory (a
    load of it left ~80 MB of freed heap behind). The output head is not needed: llama.cpp computes
    the prompt's last token, and with it the first reply token's logits, itself.
    """
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    class Int8Linear(torch.nn.Module):
        def __init__(self, weight: Any, bias: Any, delta: Callable[[], Any] | None) -> None:
            super().__init__()
            q, scale = _int8_rows(weight, delta)
            self.register_buffer("q", q)
            self.register_buffer("scale", scale.to(dtype))
            self.bias = None if bias is None else torch.nn.Parameter(bias.to(dtype), requires_grad=False)

        def forward(self, x: Any) -> Any:
            return torch.nn.functional.linear(x, self.q.to(dtype) * self.scale, self.bias)

    class Int8Embedding(torch.nn.Module):
        def __init__(self, weight: Any) -> None:
            super().__init__()
            q, scale = _int8_rows(weight)
            self.register_buffer("q", q)
            self.register_buffer("scale", scale.to(dtype))

        def forward(self, ids: Any) -> Any:
            return self.q[ids].to(dtype) * self.scale[ids]

    config = _config(model_dir)
    with torch.device("meta"):
        body = AutoModelForCausalLM.from_config(config, dtype=dtype).model
    # computed, not loaded: the rotary frequencies (kept in float32 by the module itself)
    body.rotary_emb = type(body.rotary_emb)(config=config)
    where: dict[str, Path] = {}
    for file in _weight_files(model_dir):
        with safe_open(str(file), framework="pt") as f:
            where.update(dict.fromkeys(f.keys(), file))
    deltas = _lora_deltas(adapter_dir, config.num_hidden_layers)

    def read(name: str) -> Any:
        key = f"model.{name}" if f"model.{name}" in where else name
        if key not in where:
            raise Unavailable(f"{model_dir} lacks the weight {key}.", code="model_load_failed")
        with safe_open(str(where[key]), framework="pt") as f:
            return f.get_tensor(key)

    with torch.no_grad():
        for name, module in list(body.named_modules()):
            parent, _, child = name.rpartition(".")
            if isinstance(module, torch.nn.Linear):
                bias = read(f"{name}.bias") if module.bias is not None else None
                new: Any = Int8Linear(read(f"{name}.weight"), bias, deltas.pop(name, None))
            elif isinstance(module, torch.nn.Embedding):
                new = Int8Embedding(read(f"{name}.weight"))
            else:
                for pname, _param in list(module.named_parameters(recurse=False)):
                    module.register_parameter(pname, torch.nn.Parameter(read(f"{name}.{pname}").to(dtype),
                                                                        requires_grad=False))
                continue
            setattr(body.get_submodule(parent) if parent else body, child, new)
            if child in ("down_proj", "embed_tokens"):
                _trim_heap(collect=False)  # once a layer: the float32 copies freed here stay resident otherwise
    if deltas:
        raise Unavailable(f"The adapter changes layers the model lacks: {sorted(deltas)[:3]}", code="bad_adapter")
    if meta := [n for n, t in [*body.named_parameters(), *body.named_buffers()] if t.is_meta]:
        raise Unavailable(f"{model_dir} lacks weights for {meta[:3]}", code="model_load_failed")
    return body.eval()



def _trim_heap(*, collect: bool = True) -> None:
    """Hand freed memory back to the OS: glibc keeps freed heap pages otherwise, and the server's
    resident memory grew by ~300 MB over 20 replies (7 ms a call here)."""
    import gc

    if collect:
        gc.collect()
    from models.glibc import malloc_trim

    malloc_trim()


class PrefillNotReady(Exception):
    """The PyTorch model is being loaded for another adapter; llama.cpp prefills this prompt itself."""


class TorchPrefiller:
    """The base model in PyTorch with the running adapter merged in; prefills prompts for llama.cpp.

    ``model_dir`` is the converted Hugging Face folder of the same base model llama.cpp runs;
    ``adapter_dir`` maps an adapter id to its peft folder. One adapter is added in at a time: a
    different one reads the base weights again and adds it (1.0 s measured here; the first load in a
    process 3.9 s). The engine asks for that with :meth:`prepare_in_background` and has llama.cpp
    prefill meanwhile, so that an adapter switch never stalls the conversations being decoded.
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
        self._failed: tuple[Any, BaseException] | None = None  # (key, error) of the last load that failed
        self._loader: threading.Thread | None = None
        self._loader_guard = threading.Lock()
        self._closed = False  # a load still running when the generator closes must not load after it

    @staticmethod
    def _key_of(adapter_id: str | None, fingerprint: str | None) -> tuple[str | None, str | None]:
        return (adapter_id, fingerprint if adapter_id is not None else None)

    def is_ready(self, adapter_id: str | None, fingerprint: str | None = None) -> bool:
        """Whether ``adapter_id`` (with files of ``fingerprint``) is merged in and loaded."""
        return self._model is not None and self._key == self._key_of(adapter_id, fingerprint)

    def failure(self, adapter_id: str | None, fingerprint: str | None = None) -> BaseException | None:
        """The error of the last load of ``adapter_id`` when it failed (it is not tried again)."""
        failed = self._failed
        return failed[1] if failed is not None and failed[0] == self._key_of(adapter_id, fingerprint) else None

    def prepare_in_background(self, adapter_id: str | None, fingerprint: str | None = None) -> threading.Thread:
        """:meth:`prepare` on a thread of its own, unless a load is already running; that thread.
        A failure is logged and kept (:meth:`failure`)."""
        with self._loader_guard:
            if self._loader is not None and self._loader.is_alive():
                return self._loader

            def load() -> None:
                try:
                    self.prepare(adapter_id, fingerprint)
                except Exception:  # noqa: BLE001 - kept in self._failed; llama.cpp prefills meanwhile
                    if self._closed:
                        return  # the generator closed while this load waited: nothing to report
                    log.warning("the PyTorch prefill model could not be loaded for %s", adapter_id or "the base model",
                                exc_info=True)

            self._loader = threading.Thread(target=load, name="torch-prefill-load", daemon=True)
            self._loader.start()
            return self._loader

    def prepare(self, adapter_id: str | None, fingerprint: str | None = None) -> None:
        """Have ``adapter_id`` (with files of ``fingerprint``) merged in; the base model for None."""
        key = self._key_of(adapter_id, fingerprint)
        with self._lock:
            if self._closed:
                raise Unavailable("The PyTorch prefill model was closed.", code="generator_failed")
            if self._key == key and self._model is not None:
                return
            if self._failed is not None and self._failed[0] == key:
                raise self._failed[1]  # (not a reload of ~1 s for every prompt)
            import torch

            self._model, self._key = None, None  # free the old weights before loading the new ones
            dtype = getattr(torch, self.dtype_name)
            try:
                adapter = None if adapter_id is None else self.adapter_dir(adapter_id)
                body = load_int8_body(self.model_dir, adapter, dtype)
            except Exception as exc:
                self._failed = (key, exc)
                raise
            finally:
                _trim_heap()
            with torch.inference_mode():  # the first forward pass sets up the CPU kernels (~0.3 s)
                body(torch.arange(32).unsqueeze(0), use_cache=True)
            self._model, self._key = body, key
            log.info("PyTorch prefill runs %s%s (int8 weights, %s)", self.model_dir.name,
                     f" + {adapter_id}" if adapter_id else "", self.dtype_name)

    def prefill(self, ids: list[int], layout: SeqStateLayout, seq: int, *,
                adapter: tuple[str | None, str | None] | None = None) -> bytes:
        """The llama.cpp state bytes of ``ids``' keys and values, for sequence ``seq``.

        ``adapter``: ``(adapter id, fingerprint)`` the prompt is for; :class:`PrefillNotReady` when another
        one is merged in or being loaded (the call never waits for a load).
        """
        import torch

        if not self._lock.acquire(blocking=False):
            raise PrefillNotReady("the PyTorch prefill model is being loaded")
        try:
            body = self._model
            if body is None:
                raise Unavailable("The PyTorch prefill model is not loaded.", code="generator_failed")
            if adapter is not None and self._key != self._key_of(*adapter):
                raise PrefillNotReady(f"the PyTorch prefill model runs {self._key}, not {adapter}")
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            with torch.inference_mode():
                out = body(torch.tensor([ids]), use_cache=True)
                cache = getattr(out, "cache", None)
                layers = _cache_layers(cache if cache is not None else out.past_key_values)
                if len(layers) != layout.n_layer:
                    raise LayoutMismatch(f"PyTorch has {len(layers)} layers, llama.cpp {layout.n_layer}.",
                                         code="state_layout")
                n = len(ids)
                keys = [interleave_rotary(k[0]).transpose(0, 1).reshape(n, -1).to(torch.float16).numpy()
                        for k, _ in layers]
                values = [v[0].transpose(0, 1).reshape(n, -1).to(torch.float16).numpy() for _, v in layers]
        finally:
            self._lock.release()
        if keys[0].shape[1] * 2 != layout.k_row_bytes or values[0].shape[1] != layout.v_width:
            raise LayoutMismatch(
                f"PyTorch's key/value widths ({keys[0].shape[1]}, {values[0].shape[1]}) are not llama.cpp's "
                f"({layout.k_row_bytes // 2}, {layout.v_width}).", code="state_layout")
        state = layout.blob(keys, values, seq)
        del keys, values, out, layers, cache
        _trim_heap(collect=False)  # the activations' ~50 MB: freed, but glibc would keep the pages
        return state

    def close(self) -> None:
        with self._lock:
            self._model, self._key, self._closed = None, None, True
