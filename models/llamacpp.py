"""In-process generation on llama.cpp, through llama-cpp-python's C API.

Why: a decode step of the 135M model in PyTorch reads 540 MB of fp32 weights and pays per-module
Python overhead; llama.cpp runs the shipped GGUF weights itself (C kernels), which makes
single-stream decoding several times faster on a 2-core CPU (figures in ``benchmarks/RESULTS.md``).
By default the shipped Q4_1 file is re-encoded once to Q8_0 (:func:`requantized_gguf`): the same
weights to within 1/254 of each block's largest magnitude, with llama.cpp's fast matrix kernels, so prompts
prefill about twice as fast. ``weights="shipped"`` runs the Q4_1 file as it is. The peft LoRA
folder is converted to a GGUF LoRA file (:mod:`models.gguf_lora`) and, by default, merged into a
copy of the base weights (``merge_adapters``): llama.cpp applying a LoRA file at run time costs
about 15 % of the decode speed of this small model. Switching to another adapter then swaps the
model file in process (0.2 s measured on two cores, and the KV cache starts empty); with
``merge_adapters=False`` the LoRA files are applied at run time and switch without reloading.
Flash attention is on by default. The unified cache below makes every query attend over every
cell in use, other sequences' cells masked; without flash attention those masked cells are still
computed, so a 1,070-token prompt prefilled in 0.9 s on an empty cache took 5.9 s beside 7,700 cells
of other sequences, and a one-row decode step 25.5 against 10.7 ms (bf16, measured here). llama.cpp's
CPU flash attention skips masked cells (1.4 s, 13.0 ms). It costs a little on a cache that holds
little, e.g. ~20 % on 16-row steps over a shared 530-token prompt (``benchmarks/results/hybrid.md``).

How: one llama.cpp context with a *unified* KV cache shared by up to ``max_batch +
prefix_cache_size`` sequences. The scheduling is :class:`models.batching.BatchingEngine`'s (same
requests, same adapter grouping, same readers); only the batch differs:

* every running reply is a llama.cpp sequence; a decode step sends one token per sequence in one
  ``llama_decode`` call, so the weights are read once for the whole batch;
* a new prompt starts from the longest prefix already in the cache (a running reply's prompt, or a
  finished one kept for reuse): ``llama_memory_seq_cp`` shares those cells with the new sequence
  without copying, and only the rest of the prompt is prefilled;
* when the cache is full, the least recently used finished sequences are dropped first.

Prompts are rendered and tokenised with the same Hugging Face tokenizer and chat template as the
transformers backend (:mod:`models.prompting`), so both backends see identical token ids.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.errors import InvalidInput, Unavailable
from models.batching import _DONE, BatchingEngine, BatchRequest, _Batch, _common_prefix
from models.generation import BaseGenerator, LocalAdapters

log = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_ready = False
_log_callback: Any = None  # the ctypes callback must outlive every llama.cpp call


def llama_cpp_available() -> bool:
    """True when llama-cpp-python is installed (the fast in-process backend can run)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _native() -> Any:
    """The ``llama_cpp`` module, its backend initialised once and its logging quietened."""
    global _backend_ready
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise Unavailable(
            "llama-cpp-python is not installed; `pip install llama-cpp-python` or set "
            "HYBRIDESK_GENERATOR=transformers.",
            code="llama_cpp_missing",
        ) from exc
    global _log_callback
    with _backend_lock:
        if not _backend_ready:
            # llama.cpp's own messages go to this module's logger (ggml levels: 1 debug, 2 info,
            # 3 warn, 4 error, 5 continuation). Warnings are kept, except the one every start
            # gives by design: the unified cache is larger than one sequence's trained context
            # (the engine itself keeps each request within it).
            def forward(level: int, text: bytes, _user: Any) -> None:
                message = text.decode("utf-8", "replace").rstrip()
                if not message:
                    return
                if level == 4:
                    log.error("llama.cpp: %s", message)
                elif level == 3 and "n_ctx_seq" not in message:
                    log.warning("llama.cpp: %s", message)
                else:
                    log.debug("llama.cpp: %s", message)

            _log_callback = llama_cpp.llama_log_callback(forward)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


#: base-weight encodings :class:`LlamaCppGenerator` can run: the file as shipped, or re-encoded to Q8_0 or bf16
WEIGHT_FORMATS = ("shipped", "q8_0", "bf16")
#: PyTorch prefills failing this many times in a row turn it off: the failure is not a passing one
TORCH_PREFILL_FAILURE_LIMIT = 3
#: re-encodings of the shipped file: llama.cpp's file type, and the suffix of the cached file's name
_ENCODINGS = {"q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", "Q8_0"), "bf16": ("LLAMA_FTYPE_MOSTLY_BF16", "BF16")}


def requantized_gguf(source: Path | str, cache_dir: Path | str, *, threads: int = 2, encoding: str = "q8_0") -> Path:
    """``source`` re-encoded to Q8_0 (8-bit blocks), written once into ``cache_dir`` and reused.

    The shipped file is Q4_1, for which llama.cpp has no matrix-matrix CPU kernel: it prefills at
    about 290 tokens/s on two cores, against about 590 for Q8_0, which also decodes a little faster
    alone and scales better over a batch (``benchmarks/results/hybrid.md``). Every Q4_1 weight is
    ``d*q + m`` with 16 levels per block of 32, and Q8_0 stores the same block with 255 levels, so
    the re-encoding moves each weight by at most 1/254 of its block's largest magnitude, a small
    fraction of Q4_1's own rounding step. The cached name carries a hash of the source's content.

    ``encoding="bf16"`` writes bf16 instead (twice the bytes, every Q4_1 weight within bf16's rounding):
    on a CPU with bf16 instructions llama.cpp prefills it about 1.8x as fast as Q8_0 and its 16-row
    decode steps cost about two thirds, but one row reads twice the bytes and decodes ~20 % slower.
    """
    from models.gguf_lora import content_hash

    source = Path(source)
    if not source.is_file():
        raise Unavailable(f"GGUF model file {source} does not exist.", code="model_not_found")
    if encoding not in _ENCODINGS:
        raise InvalidInput(f"cannot re-encode to {encoding!r}; one of {', '.join(_ENCODINGS)}", code="bad_setting")
    ftype, suffix = _ENCODINGS[encoding]
    target = Path(cache_dir) / f"{source.stem}-{content_hash(source)[:12]}.{suffix}.gguf"
    if target.is_file():
        return target
    L = _native()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    params = L.llama_model_quantize_default_params()
    params.ftype = getattr(L, ftype)
    params.allow_requantize = True
    params.nthread = max(1, threads)
    try:
        rc = L.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if rc != 0 or not partial.is_file():
            raise Unavailable(f"llama.cpp could not re-encode {source.name} to {suffix} (code {rc}).",
                              code="model_load_failed")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("re-encoded %s to %s at %s", source.name, suffix, target)
    return target


class KVCacheFull(Unavailable):
    """``llama_decode`` found no room in the KV cache for the batch."""


class LlamaCppRuntime:
    """A llama.cpp model and one context whose unified KV cache holds ``n_seq`` sequences.

    Not thread-safe: the engine calls it from its worker thread, under its lock.
    """

    def __init__(
        self,
        gguf_path: Path | str,
        *,
        n_ctx: int = 12288,
        n_batch: int = 512,
        n_seq: int = 20,
        n_threads: int = 2,
        kv_unified: bool = True,
        flash_attn: int = -1,
        kv_type: int | None = None,
        merged: bool = False,
    ) -> None:
        L = _native()
        self._L = L
        self.gguf_path = Path(gguf_path)
        if not self.gguf_path.is_file():
            raise Unavailable(f"GGUF model file {self.gguf_path} does not exist.", code="model_not_found")
        self._options = {"n_ctx": n_ctx, "kv_unified": kv_unified, "flash_attn": flash_attn, "kv_type": kv_type}
        self.n_batch = n_batch
        self.n_seq = n_seq
        self.n_threads = n_threads
        #: adapters are model files with the LoRA merged in (:func:`models.gguf_lora.merge_lora_gguf`),
        #: swapped in whole, rather than LoRA files applied on top of the base at every decode
        self.merged = merged
        self.model = self.ctx = None
        self.loaded_path: Path | None = None
        #: called (under the engine's lock) after the model was swapped: every KV cell is gone
        self.swap_listeners: list[Any] = []
        self.swaps = 0
        self._load(self.gguf_path)
        self.n_ctx_train = int(L.llama_model_n_ctx_train(self.model))
        self._batch = L.llama_batch_init(n_batch, 0, 1)
        self._adapters: dict[str, Any] = {}
        self.active_adapter: str | None = None

    def _load(self, path: Path) -> None:
        """Load the model at ``path`` and a fresh context for it (the previous ones must be freed)."""
        L = self._L
        model = L.llama_model_load_from_file(str(path).encode(), L.llama_model_default_params())
        if not model:
            raise Unavailable(f"llama.cpp could not load {path}.", code="model_load_failed")
        params = L.llama_context_default_params()
        params.n_ctx = self._options["n_ctx"]
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.n_seq
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.kv_unified = self._options["kv_unified"]
        params.flash_attn_type = self._options["flash_attn"]
        if self._options["kv_type"] is not None:
            params.type_k = params.type_v = self._options["kv_type"]
        params.no_perf = True
        ctx = L.llama_init_from_model(model, params)
        if not ctx:
            L.llama_model_free(model)
            raise Unavailable("llama.cpp could not create a context (out of memory?).", code="model_load_failed")
        self.model, self.ctx, self.loaded_path = model, ctx, Path(path)
        self.n_ctx = int(L.llama_n_ctx(ctx))
        self.mem = L.llama_get_memory(ctx)
        self.n_vocab = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(model)))
        self._state_layout = None  # learned again for every context (seq_state_layout)

    def _unload(self) -> None:
        L = self._L
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None

    def _swap_to(self, path: Path) -> None:
        """Run ``path``'s weights from now on (merged adapters). Every KV cell is lost; listeners are told."""
        if path == self.loaded_path and self.model:
            return
        previous = self.loaded_path
        self._unload()
        try:
            self._load(path)
        except BaseException:
            if previous is not None:
                self._load(previous)  # keep serving the weights that worked
            raise
        finally:
            self.swaps += 1
            for listener in self.swap_listeners:
                listener()
        log.info("llama.cpp now runs %s", path.name)

    # adapters ----------------------------------------------------------------------------------
    def has_adapter(self, adapter_id: str) -> bool:
        return adapter_id in self._adapters

    def load_adapter(self, adapter_id: str, gguf_file: Path | str) -> None:
        """Register ``adapter_id``: a GGUF LoRA file, or with ``merged`` a whole model file with it merged in."""
        if adapter_id in self._adapters:
            return
        if self.merged:
            if not Path(gguf_file).is_file():
                raise InvalidInput(f"The merged model file for adapter {adapter_id!r} is missing ({gguf_file}).",
                                   code="bad_adapter")
            self._adapters[adapter_id] = Path(gguf_file)
            return
        pointer = self._L.llama_adapter_lora_init(self.model, str(gguf_file).encode())
        if not pointer:
            raise InvalidInput(
                f"llama.cpp rejected the LoRA file for adapter {adapter_id!r} ({gguf_file}).", code="bad_adapter"
            )
        self._adapters[adapter_id] = pointer

    def replace_adapter(self, adapter_id: str, gguf_file: Path | str) -> None:
        """Load ``gguf_file`` as ``adapter_id`` in place of the weights loaded under that id before (its files
        were replaced); the context applies the new ones from the next decode. The old weights stay when the
        new file cannot be loaded."""
        old = self._adapters.pop(adapter_id, None)
        try:
            self.load_adapter(adapter_id, gguf_file)
        except BaseException:
            if old is not None:
                self._adapters[adapter_id] = old
            raise
        if self.merged:
            return  # a running batch keeps the model it has; the next batch loads the new file
        if self.active_adapter == adapter_id:
            self.active_adapter = None  # (use_adapter returns early for the id it has)
            self.use_adapter(adapter_id)
        if old is not None:
            self._L.llama_adapter_lora_free(old)

    def use_adapter(self, adapter_id: str | None, *, between_batches: bool = False) -> None:
        """Apply ``adapter_id`` (or none) to every following decode.

        With ``merged`` this swaps the model file when the adapter changes, or ``between_batches``
        when the adapter's file was replaced; a swap drops every KV cell, and the swap listeners (the
        engine's slots) forget what the cells held. The engine changes adapters only between batches.
        """
        if self.merged:
            if adapter_id != self.active_adapter or between_batches:
                self._swap_to(self.gguf_path if adapter_id is None else self._adapters[adapter_id])
                self.active_adapter = adapter_id
            return
        if adapter_id == self.active_adapter:
            return
        L = self._L
        if adapter_id is None:
            rc = L.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            adapters = (L.llama_adapter_lora_p_ctypes * 1)(self._adapters[adapter_id])
            scales = (ctypes.c_float * 1)(1.0)
            rc = L.llama_set_adapters_lora(self.ctx, adapters, 1, scales)
        if rc != 0:
            raise Unavailable(f"llama.cpp could not switch to adapter {adapter_id!r} ({rc}).", code="generator_failed")
        self.active_adapter = adapter_id

    def set_threads(self, n_threads: int) -> None:
        """Threads for the following decodes (llama.cpp builds its thread pool per call)."""
        if n_threads != self.n_threads:
            self._L.llama_set_n_threads(self.ctx, n_threads, n_threads)
            self.n_threads = n_threads

    # KV cache ----------------------------------------------------------------------------------
    def seq_rm(self, seq: int, start: int = -1, end: int = -1) -> None:
        self._L.llama_memory_seq_rm(self.mem, seq, start, end)

    def seq_cp(self, src: int, dst: int, start: int, end: int) -> None:
        self._L.llama_memory_seq_cp(self.mem, src, dst, start, end)

    def clear(self) -> None:
        self._L.llama_memory_clear(self.mem, True)

    def seq_state_layout(self, seq: int) -> Any:
        """How this build writes a sequence's KV cells (:class:`models.torch_prefill.SeqStateLayout`).

        Learned once per context from a two-token sequence written into ``seq``, which must be
        empty (it is emptied again afterwards). Raises ``LayoutMismatch`` when the bytes are not
        laid out as expected.
        """
        if self._state_layout is None:
            from models.torch_prefill import SeqStateLayout

            L = self._L
            self.decode([(1, 0, seq, False), (2, 1, seq, False)])
            try:
                size = int(L.llama_state_seq_get_size(self.ctx, seq))
                buf = (ctypes.c_uint8 * size)()
                written = int(L.llama_state_seq_get_data(self.ctx, buf, size, seq))
                self._state_layout = SeqStateLayout.parse(bytes(buf[:written]), 2, seq)
            finally:
                self.seq_rm(seq)
        return self._state_layout

    def set_seq_state(self, seq: int, data: bytes) -> bool:
        """Load KV cells written as :meth:`seq_state_layout` says into the empty sequence ``seq``.

        False when the cache has no room for them in one run of free cells (``seq`` is then empty).
        """
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if int(self._L.llama_state_seq_set_data(self.ctx, buf, len(data), seq)) == len(data):
            return True
        self.seq_rm(seq)
        return False

    # decoding ----------------------------------------------------------------------------------
    def decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> list[Any]:
        """Run ``(token, position, sequence, wants_logits)`` entries (at most ``n_batch``) through the model.

        Returns one float32 array of logits per entry that asked for them, in order. The arrays
        are views of llama.cpp's buffer (no copy): valid until the next ``decode``.
        """
        import numpy as np

        L, batch = self._L, self._batch
        if not entries or len(entries) > self.n_batch:
            raise ValueError(f"decode takes 1..{self.n_batch} entries, got {len(entries)}")
        for i, (token, position, seq, wants) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if wants else 0
        batch.n_tokens = len(entries)
        rc = L.llama_decode(self.ctx, batch)
        if rc == 1:
            raise KVCacheFull("The generator's KV cache is full.", code="generator_busy")
        if rc != 0:
            raise Unavailable(f"llama.cpp failed to decode a batch (code {rc}).", code="generator_failed")
        out = []
        for i, entry in enumerate(entries):
            if entry[3]:
                pointer = L.llama_get_logits_ith(self.ctx, i)
                out.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)))
        return out

    def close(self) -> None:
        L = self._L
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "ctx", None):
            L.llama_free(self.ctx)
            self.ctx = None
        if not self.merged:
            for pointer in self._adapters.values():
                L.llama_adapter_lora_free(pointer)
        self._adapters.clear()
        if getattr(self, "model", None):
            L.llama_model_free(self.model)
            self.model = None


@dataclass(eq=False)
class _Slot:
    """One llama.cpp sequence id and the tokens its KV cells hold (positions 0..len-1)."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    adapter_id: str | None = None
    busy: bool = False
    used: int = 0
    prompt_len: int = 0  # tokens of the running reply's prompt; the reply's own cells follow them


class _Slots:
    """Which sequence ids hold what, for prefix reuse and eviction."""

    def __init__(self, runtime: LlamaCppRuntime, keep_finished: int, min_prefix: int = 16) -> None:
        self.runtime = runtime
        self.keep_finished = keep_finished
        self.min_prefix = min_prefix
        self.slots = [_Slot(seq) for seq in range(runtime.n_seq)]
        self._clock = itertools.count(1)

    def acquire(self, adapter_id: str | None, prompt: list[int]) -> tuple[_Slot, int]:
        """A sequence for ``prompt`` holding its longest cached prefix; returns (slot, reused tokens)."""
        best, source = 0, None
        for slot in self.slots:
            if slot.tokens and slot.adapter_id == adapter_id:
                n = _common_prefix(tuple(slot.tokens), prompt)
                if n > best:
                    best, source = n, slot
        best = min(best, len(prompt) - 1)  # one token is always prefilled: its logits give the reply's first
        if best < self.min_prefix:
            best, source = 0, None
        free = [s for s in self.slots if not s.busy and s is not source]
        if not free:
            if source is None or source.busy:
                raise Unavailable("Every generation slot is busy.", code="generator_busy")
            target = source  # the only free sequence is the source itself: reuse it in place
            self.runtime.seq_rm(target.seq, best, -1)
            del target.tokens[best:]
        else:
            empty = [s for s in free if not s.tokens]
            target = empty[0] if empty else min(free, key=lambda s: s.used)
            self.forget(target)
            if source is not None:
                self.runtime.seq_cp(source.seq, target.seq, 0, best)
                target.tokens = list(prompt[:best])
        target.busy, target.adapter_id, target.used = True, adapter_id, next(self._clock)
        return target, best

    def release(self, slot: _Slot) -> None:
        """The reply is done; its prompt's cells stay for prefix reuse (up to ``keep_finished`` replies).

        The reply's own cells are dropped. A later prompt almost never continues with the same
        generated tokens: the next turn's history holds the reply with its slots filled, after a
        system message that usually differs. In the unified cache every kept cell is attended
        over (masked) by every later decode step, so cells nobody will reuse slow every reply.
        """
        if slot.prompt_len and len(slot.tokens) > slot.prompt_len:
            self.runtime.seq_rm(slot.seq, slot.prompt_len, -1)
            del slot.tokens[slot.prompt_len :]
        slot.prompt_len = 0
        slot.busy = False
        slot.used = next(self._clock)
        finished = sorted((s for s in self.slots if not s.busy and s.tokens), key=lambda s: s.used)
        for old in finished[: max(0, len(finished) - self.keep_finished)]:
            self.forget(old)

    def forget(self, slot: _Slot) -> None:
        if slot.tokens:
            self.runtime.seq_rm(slot.seq, -1, -1)
        slot.tokens = []

    def cells_lost(self) -> None:
        """The runtime swapped its model: no sequence holds anything any more."""
        for slot in self.slots:
            slot.tokens = []

    def forget_adapter(self, adapter_id: str) -> None:
        """Drop every finished sequence computed with ``adapter_id`` (its weights were replaced)."""
        for slot in self.slots:
            if not slot.busy and slot.tokens and slot.adapter_id == adapter_id:
                self.forget(slot)

    def forget_other_adapters(self, adapter_id: str | None) -> None:
        """Drop every finished sequence that was computed with another adapter."""
        for slot in self.slots:
            if not slot.busy and slot.tokens and slot.adapter_id != adapter_id:
                self.forget(slot)

    def evict_one(self) -> bool:
        """Drop the least recently used finished sequence; False when there is none."""
        finished = [s for s in self.slots if not s.busy and s.tokens]
        if not finished:
            return False
        self.forget(min(finished, key=lambda s: s.used))
        return True


class ThreadTuner:
    """Picks how many threads each decode uses, from how fast recent decodes went.

    llama.cpp's threads spin at their barriers. On an idle machine two threads on two cores decode
    about 1.7x faster than one; when other processes keep a core busy, the second thread waits
    a whole scheduler slice at every barrier and two threads ran 4-5x *slower* than one (5 against
    23 tokens/s at load 5.5). So the engine keeps a moving average of seconds per decoded row for
    each thread count, uses the faster one, and every ``explore_every`` decodes tries the other
    for a few decodes to notice when the machine's load has changed.
    """

    def __init__(self, max_threads: int, *, explore_every: int = 48, explore_steps: int = 3) -> None:
        self.options = sorted({1, max(1, max_threads)})
        self.current = self.options[-1]
        self.explore_every = explore_every
        self.explore_steps = explore_steps
        self.per_row: dict[int, float] = {}
        self._count = 0
        self._fresh: set[int] = set()  # options whose next measurement replaces their average

    def choose(self) -> int:
        """Thread count for the next decode."""
        self._count += 1
        if len(self.options) == 1:
            return self.current
        best = min(self.per_row, key=self.per_row.__getitem__) if self.per_row else self.current
        phase = self._count % self.explore_every
        if phase < self.explore_steps or len(self.per_row) < len(self.options):
            others = [n for n in self.options if n != best]
            untried = [n for n in reversed(self.options) if n not in self.per_row]  # most threads first
            pick = untried[0] if untried else others[0]
            if phase == 0:
                self._fresh.add(pick)  # an old average says nothing about the load now
            return pick
        return best

    def observe(self, threads: int, seconds: float, rows: int) -> None:
        """Record that a decode of ``rows`` rows took ``seconds`` with ``threads`` threads."""
        value = seconds / max(1, rows)
        old = self.per_row.get(threads)
        fresh = threads in self._fresh
        self._fresh.discard(threads)
        self.per_row[threads] = value if old is None or fresh else 0.7 * old + 0.3 * value
        if len(self.per_row) == len(self.options):  # until both are measured, keep the most threads
            self.current = min(self.per_row, key=self.per_row.__getitem__)


class LlamaCppEngine(BatchingEngine):
    """:class:`BatchingEngine` scheduling over a :class:`LlamaCppRuntime`."""

    def __init__(
        self,
        runtime: LlamaCppRuntime,
        pick: Any,
        eos_ids: set[int],
        lock: threading.RLock,
        *,
        max_batch: int = 16,
        prefix_cache_size: int = 4,
        adaptive_threads: bool = True,
    ) -> None:
        super().__init__(lambda _a: (None, None), pick, eos_ids, lock, max_batch=max_batch)
        self.runtime = runtime
        self.slots = _Slots(runtime, keep_finished=prefix_cache_size)
        runtime.swap_listeners.append(self.slots.cells_lost)
        self.tuner = ThreadTuner(runtime.n_threads) if adaptive_threads else None
        #: ``(tokens, adapter_id, layout, seq) -> state bytes``: prefills cold prompts in PyTorch
        #: (:mod:`models.torch_prefill`); None prefills everything in llama.cpp
        self.torch_prefill: Any = None
        self.torch_min_tokens = 64
        self.torch_prefills = 0
        self.torch_prefill_failures = 0  # in a row; TORCH_PREFILL_FAILURE_LIMIT turns it off
        self.torch_prefills_skipped = 0  # prompts llama.cpp prefilled while PyTorch loaded another adapter

    def _new_batch(self, adapter_id: str | None) -> _Batch:
        return _LlamaBatch(adapter_id, self)

    @property
    def max_tokens(self) -> int:
        """Longest prompt + reply one request may have: the cache, and the model's trained context."""
        return min(self.runtime.n_ctx, self.runtime.n_ctx_train)

    def submit(self, request: BatchRequest) -> BatchRequest:
        need = len(request.prompt_ids) + request.max_new_tokens
        if need > self.max_tokens:
            raise InvalidInput(
                f"The prompt ({len(request.prompt_ids)} tokens) and reply ({request.max_new_tokens}) do not fit "
                f"the generator's context of {self.max_tokens} tokens.",
                code="prompt_too_long",
            )
        return super().submit(request)

    def _take_admissible(self, batch: _Batch | None) -> list[BatchRequest]:
        """As the base engine, but only as many requests as the KV cache has room for.

        The estimate is conservative: every running reply counts the cells of its whole prompt (even
        a prefix it shares) and of every token it may still generate; a new request counts its
        whole prompt and reply. Finished replies kept for reuse do not count: they are evicted to
        make room. An empty batch always takes its first request (``submit`` checked it fits).
        """
        taken = super()._take_admissible(batch)
        if not taken:
            return taken
        running = batch.rows if batch is not None else []
        slot_of = batch.slot_of if isinstance(batch, _LlamaBatch) else {}
        budget = self.runtime.n_ctx - sum(
            len(slot_of[r].tokens) + (r.max_new_tokens - r.generated) for r in running if r in slot_of
        )
        fits: list[BatchRequest] = []
        for req in taken:
            need = len(req.prompt_ids) + req.max_new_tokens
            if need > budget and (running or fits):
                break
            fits.append(req)
            budget -= need
        if len(fits) < len(taken):
            self._pending[:0] = taken[len(fits) :]  # back to the front of the queue, in order
        return fits

    def clear_prefix_cache(self) -> None:
        """Forget every finished sequence kept for reuse (for benchmarks: a cold first token)."""
        with self.lock:
            while self.slots.evict_one():
                pass

    def decode(self, entries: list[tuple[int, int, int, bool]], *, tune: bool = False) -> list[Any]:
        """``runtime.decode`` that makes room by dropping cached sequences when the cache is full.

        With ``tune`` (decode steps: one token per row) the thread count is chosen and measured by
        the tuner; prefill chunks run with the count that is currently fastest.
        """
        while True:
            try:
                if self.tuner is None:
                    return self.runtime.decode(entries)
                threads = self.tuner.choose() if tune else self.tuner.current
                self.runtime.set_threads(threads)
                started = time.perf_counter()
                out = self.runtime.decode(entries)
                if tune:
                    self.tuner.observe(threads, time.perf_counter() - started, len(entries))
                return out
            except KVCacheFull:
                if not self.slots.evict_one():
                    raise

    def prefill(self, slot: _Slot, prompt: list[int], start: int) -> Any:
        """Feed ``prompt[start:]`` into ``slot``'s sequence; the logits after its last token.

        A prompt of which less than half is cached (and at least ``torch_min_tokens`` are new) goes
        to ``torch_prefill`` when there is one: PyTorch computes every token but the last, from the
        start (what was cached is dropped), and llama.cpp decodes the last one. On two cores PyTorch
        computes a whole prompt in about half the time llama.cpp needs for it on an empty cache, and
        llama.cpp gets slower still as other sequences fill its unified cache (every prompt token
        attends over all their cells), so it wins whenever more than half of the prompt is new. Any
        failure there falls back to llama.cpp.
        """
        new = len(prompt) - start
        if self.torch_prefill is not None and new >= self.torch_min_tokens and 2 * new >= len(prompt):
            logits = self._prefill_in_torch(slot, prompt)
            if logits is not None:
                return logits
            start = len(slot.tokens)
        return self._prefill_in_llama(slot, prompt, start)

    def _prefill_in_llama(self, slot: _Slot, prompt: list[int], start: int) -> Any:
        size = self.runtime.n_batch
        logits = None
        for chunk_start in range(start, len(prompt), size):
            chunk = prompt[chunk_start : chunk_start + size]
            last = chunk_start + len(chunk) == len(prompt)
            entries = [
                (token, chunk_start + i, slot.seq, last and i == len(chunk) - 1) for i, token in enumerate(chunk)
            ]
            out = self.decode(entries)
            slot.tokens.extend(chunk)
            if out:
                logits = out[0]
        return logits

    def _prefill_in_torch(self, slot: _Slot, prompt: list[int]) -> Any:
        """``prompt``'s cells, all but the last token's computed by ``torch_prefill``, loaded into ``slot``;
        llama.cpp decodes the last token itself and gives the logits. None if that failed."""
        from models.torch_prefill import LayoutMismatch, PrefillNotReady

        runtime = self.runtime
        runtime.seq_rm(slot.seq)
        slot.tokens = []
        head = prompt[:-1]
        try:
            layout = runtime.seq_state_layout(slot.seq)
            state = self.torch_prefill(head, runtime.active_adapter, layout, slot.seq)
        except LayoutMismatch as exc:
            log.warning("prefilling in PyTorch is off: %s", exc)
            self.torch_prefill = None
            return None
        except PrefillNotReady as exc:  # not a failure: llama.cpp prefills until the model is loaded
            log.debug("llama.cpp prefills this prompt: %s", exc)
            self.torch_prefills_skipped += 1
            return None
        except Exception as exc:  # noqa: BLE001 - llama.cpp prefills the prompt instead
            self.torch_prefill_failures += 1
            if self.torch_prefill_failures >= TORCH_PREFILL_FAILURE_LIMIT:
                log.warning("prefilling in PyTorch failed %d times in a row (%s); it is off, llama.cpp prefills "
                            "every prompt", self.torch_prefill_failures, exc)
                self.torch_prefill = None
            else:  # the traceback once per run of failures; a transient one is retried next prompt
                log.warning("prefilling in PyTorch failed; llama.cpp prefills this prompt%s",
                            f": {exc}" if self.torch_prefill_failures > 1 else "",
                            exc_info=self.torch_prefill_failures == 1)
            return None
        self.torch_prefill_failures = 0
        while not runtime.set_seq_state(slot.seq, state):
            if not self.slots.evict_one():
                return None
        slot.tokens = list(head)
        self.torch_prefills += 1
        return self._prefill_in_llama(slot, prompt, len(head))


class _LlamaBatch(_Batch):
    """The running replies: one llama.cpp sequence each."""

    engine: LlamaCppEngine

    def __init__(self, adapter_id: str | None, engine: LlamaCppEngine) -> None:
        super().__init__(adapter_id, engine)
        self.slot_of: dict[BatchRequest, _Slot] = {}
        with engine.lock:
            if engine.runtime.active_adapter != adapter_id:
                # cells another adapter computed are never reused by this one; drop them so that
                # the cache holds one adapter's sequences only
                engine.slots.forget_other_adapters(adapter_id)
            engine.runtime.use_adapter(adapter_id, between_batches=True)

    def admit(self, req: BatchRequest) -> None:
        engine = self.engine
        runtime = engine.runtime
        with engine.lock:
            runtime.use_adapter(self.adapter_id)
            slot, reused = engine.slots.acquire(self.adapter_id, req.prompt_ids)
            try:
                torch_prefills = engine.torch_prefills
                logits = engine.prefill(slot, req.prompt_ids, reused)
                if engine.torch_prefills != torch_prefills:
                    reused = 0  # PyTorch computed the prompt from its start: nothing cached was used
                slot.prompt_len = len(req.prompt_ids)
            except BaseException:
                engine.slots.forget(slot)
                engine.slots.release(slot)
                raise
        req.reused_prefix = reused
        engine.prefix_tokens_reused += reused
        engine.prompt_tokens += len(req.prompt_ids)
        req.position = len(req.prompt_ids)
        if not self._emit(req, logits):
            with engine.lock:
                engine.slots.release(slot)
            return
        self.slot_of[req] = slot
        self.rows.append(req)

    def step(self) -> None:
        engine = self.engine
        entries = [(r.last_token, r.position, self.slot_of[r].seq, True) for r in self.rows]
        with engine.lock:
            engine.runtime.use_adapter(self.adapter_id)
            outputs = engine.decode(entries, tune=True)
        engine.steps += 1
        engine.rows_decoded += len(self.rows)
        engine.max_rows_seen = max(engine.max_rows_seen, len(self.rows))
        for req, logits in zip(self.rows, outputs, strict=True):
            self.slot_of[req].tokens.append(req.last_token)
            req.position += 1
            self._emit(req, logits)

    def drop_finished(self) -> None:
        from models.batching import _is_live

        keep = []
        for req in self.rows:
            if _is_live(req):
                keep.append(req)
                continue
            if req.cancelled.is_set():
                req.out.put(_DONE)  # harmless if the reader already has its _DONE
            with self.engine.lock:
                self.engine.slots.release(self.slot_of.pop(req))
        self.rows = keep

    def fail(self, error: BaseException) -> None:
        with self.engine.lock:
            for req in self.rows:
                req.out.put(error)
                slot = self.slot_of.pop(req, None)
                if slot is not None:
                    self.engine.slots.forget(slot)
                    self.engine.slots.release(slot)
        self.rows = []


def pick_token(logits: Any, temperature: float) -> int:
    """Greedy (``temperature <= 0``) or sampled next token from a row of numpy logits."""
    import numpy as np

    row = np.asarray(logits, dtype=np.float32).reshape(-1)
    if temperature <= 0:
        return int(row.argmax())
    scaled = (row - row.max()) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    return int(np.random.default_rng().choice(len(probs), p=probs))


class LlamaCppGenerator(LocalAdapters, BaseGenerator):
    """In-process generation on llama.cpp: the shipped GGUF, LoRA adapters converted to GGUF.

    ``gguf_path`` is the base model file; ``tokenizer_dir`` a Hugging Face folder with the same
    model's tokenizer and chat template (the converted base folder, :func:`models.base.ensure_base_model`).
    ``adapters_root`` works as for :class:`~models.generation.TransformersGenerator`; converted LoRA
    files are cached in ``cache_dir``. Every call goes through one :class:`LlamaCppEngine`
    (continuous batching up to ``max_batch`` replies, prefix reuse across ``prefix_cache_size``
    finished prompts).
    """

    def __init__(
        self,
        gguf_path: Path | str,
        tokenizer_dir: Path | str | None,
        adapters_root: Path | str | Sequence[Path | str] | None = None,
        *,
        cache_dir: Path | str,
        n_ctx: int = 12288,
        n_threads: int = 2,
        max_batch: int = 16,
        prefix_cache_size: int = 4,
        model_id: str | None = None,
        tokenizer: Any = None,
        weights: str = "q8_0",
        merge_adapters: bool = True,
        flash_attn: int = 1,
        torch_prefill: bool = True,
    ) -> None:
        from models.generation import _adapter_roots

        if weights not in WEIGHT_FORMATS:
            raise InvalidInput(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, not {weights!r}.",
                               code="bad_setting")
        self.weights = weights
        self.merge_adapters = merge_adapters
        self.flash_attn = flash_attn
        self.torch_prefill = torch_prefill
        self._prefiller: Any = None
        self.gguf_path = Path(gguf_path)
        self._run_path = self.gguf_path
        self.tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else None
        self.adapter_roots = _adapter_roots(adapters_root)
        self.cache_dir = Path(cache_dir)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_batch = max(1, max_batch)
        self.prefix_cache_size = prefix_cache_size
        self.model_id = model_id or self.gguf_path.stem
        self._tokenizer = tokenizer
        self._runtime: LlamaCppRuntime | None = None
        self._engine: LlamaCppEngine | None = None
        self._adapters: dict[str, Path] = {}
        # adapter id -> (its files' stat stamp, fingerprint) of the weights the runtime holds under that id
        self._loaded_from: dict[str, tuple[Any, str]] = {}
        self._lock = threading.RLock()
        self._eos_ids: set[int] = set()

    # loading -----------------------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._runtime is not None

    def load(self) -> None:
        """Load the tokenizer and the llama.cpp model now (otherwise on the first call)."""
        with self._lock:
            if self._runtime is not None:
                return
            if not self.gguf_path.is_file():
                raise Unavailable(
                    f"GGUF model file {self.gguf_path} does not exist; set HYBRIDESK_GGUF_PATH to the base "
                    "model's GGUF file, or HYBRIDESK_GENERATOR=transformers.",
                    code="model_not_found",
                )
            if self._tokenizer is None:
                try:
                    self._tokenizer = _load_tokenizer(self.tokenizer_dir, self.gguf_path)
                except (OSError, ValueError) as exc:
                    raise Unavailable(
                        f"No tokenizer for {self.gguf_path.name} in {self.tokenizer_dir or self.gguf_path}: {exc}",
                        code="model_not_found",
                    ) from exc
            tok = self._tokenizer
            for token in (tok.eos_token, "<|im_end|>", "<|endoftext|>"):
                if token is None:
                    continue
                tid = tok.convert_tokens_to_ids(token)
                if isinstance(tid, int) and tid != tok.unk_token_id:
                    self._eos_ids.add(tid)
            run_path = self.gguf_path
            if self.weights != "shipped":
                run_path = requantized_gguf(self.gguf_path, self.cache_dir, threads=self.n_threads,
                                            encoding=self.weights)
            self._run_path = run_path
            self._runtime = LlamaCppRuntime(
                run_path,
                n_ctx=self.n_ctx,
                n_seq=self.max_batch + max(1, self.prefix_cache_size),
                n_threads=self.n_threads,
                flash_attn=self.flash_attn,
                merged=self.merge_adapters,
            )
            if self.torch_prefill and self.tokenizer_dir is not None and (self.tokenizer_dir / "config.json").is_file():
                from models.torch_prefill import TorchPrefiller

                # the converted folder holds the same base weights as the GGUF file (the tokenizer's folder)
                self._prefiller = TorchPrefiller(self.tokenizer_dir, self.adapter_path, threads=self.n_threads)

    def warm(self, adapter_id: str | None = None) -> None:
        """As the base class; with the PyTorch prefill, its model gets ``adapter_id`` merged in now, and one
        long prompt goes the whole way (the first one paid ~0.25 s of one-off set-up: the state layout,
        PyTorch's kernels for that size)."""
        super().warm(adapter_id)
        with self._lock:
            if self._prefiller is None:
                return
            try:
                self._prefiller.prepare(adapter_id, self._fingerprint(adapter_id))
            except Exception:  # noqa: BLE001 - llama.cpp still answers, prefilling everything itself
                log.warning("the PyTorch prefill model could not be loaded from %s; llama.cpp prefills every "
                            "prompt", self.tokenizer_dir, exc_info=True)
                self._prefiller = None
                if self._engine is not None:
                    self._engine.torch_prefill = None
                return
        filler = [{"role": "user", "content": "Warming up. " * 120}]
        self.generate(filler, adapter_id=adapter_id, max_new_tokens=1)

    def _fingerprint(self, adapter_id: str | None) -> str | None:
        loaded = self._loaded_from.get(adapter_id) if adapter_id is not None else None
        return loaded[1] if loaded else None

    def _cold_prefill(self, tokens: list[int], adapter_id: str | None, layout: Any, seq: int) -> bytes:
        """The engine's ``torch_prefill``: ``tokens`` through PyTorch with the running adapter merged in."""
        from models.torch_prefill import PrefillNotReady

        prefiller = self._prefiller
        if prefiller is None:
            raise Unavailable("The PyTorch prefill is off.", code="generator_failed")
        fingerprint = self._fingerprint(adapter_id)
        if not prefiller.is_ready(adapter_id, fingerprint):
            if (error := prefiller.failure(adapter_id, fingerprint)) is not None:
                raise error  # a load that failed is not tried again for every prompt
            # another adapter: load it beside the decoding, not under the engine's lock (1-4 s)
            prefiller.prepare_in_background(adapter_id, fingerprint)
            raise PrefillNotReady(f"the PyTorch prefill model is being loaded for {adapter_id or 'the base model'}")
        return prefiller.prefill(tokens, layout, seq, adapter=(adapter_id, fingerprint))

    def _ensure_adapter(self, adapter_id: str) -> None:
        """Load ``adapter_id`` (converted to a GGUF LoRA file once), or load it again when its files changed since:
        an adapter retrained or copied in under the same id answers with its new weights, not the ones the
        server loaded first (QA: `adapters activate none`, then the same id again, kept the old replies)."""
        from models.gguf_lora import gguf_lora_for, merged_gguf_for

        self.load()
        assert self._runtime is not None
        path = self.adapter_path(adapter_id)
        loaded = self._loaded_from.get(adapter_id) if self._runtime.has_adapter(adapter_id) else None
        if (files := self._files_to_load(adapter_id, path, loaded)) is None:
            return
        stamp, fingerprint = files
        lora_file = gguf_lora_for(path, self.cache_dir, self.gguf_path, fingerprint=fingerprint)
        if self.merge_adapters:
            lora_file = merged_gguf_for(self._run_path, self.gguf_path, lora_file, self.cache_dir)
        if self._runtime.has_adapter(adapter_id):
            log.info("adapter %s changed on disk (%s, was %s): loading its new weights", adapter_id, fingerprint,
                     loaded[1] if loaded else "unknown")
            self._runtime.replace_adapter(adapter_id, lora_file)
            if self._engine is not None:
                self._engine.slots.forget_adapter(adapter_id)  # cached prompts computed with the old weights
        else:
            self._runtime.load_adapter(adapter_id, lora_file)
        self._adapters[adapter_id] = path
        self._loaded_from[adapter_id] = (stamp, fingerprint)

    def loaded_adapters(self) -> list[str]:
        return list(self._runtime._adapters) if self._runtime is not None else []

    # decoding ----------------------------------------------------------------------------------
    @property
    def engine(self) -> LlamaCppEngine:
        with self._lock:
            if self._engine is None:
                self.load()
                assert self._runtime is not None
                self._engine = LlamaCppEngine(
                    self._runtime,
                    pick_token,
                    self._eos_ids,
                    self._lock,
                    max_batch=self.max_batch,
                    prefix_cache_size=self.prefix_cache_size,
                )
                if self._prefiller is not None:
                    self._engine.torch_prefill = self._cold_prefill
            return self._engine

    def _stream(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        return self._stream_engine(
            messages, state, adapter_id=adapter_id, max_new_tokens=max_new_tokens,
            temperature=temperature, stop=stop,
        )

    def close(self) -> None:
        """Stop the worker (pending replies fail with a clear error) and free the model."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop(timeout=60.0)
        with self._lock:
            runtime, self._runtime = self._runtime, None
            if runtime is not None:
                runtime.close()
            if self._prefiller is not None:
                self._prefiller.close()
                self._prefiller = None


def _load_tokenizer(tokenizer_dir: Path | None, gguf_path: Path) -> Any:
    """The Hugging Face tokenizer (and chat template) from a folder, or read from the GGUF file."""
    from transformers import AutoTokenizer

    from models.base import set_offline

    set_offline()
    if tokenizer_dir is not None:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    else:
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
