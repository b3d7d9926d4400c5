"""Continuous batching and prompt-prefix KV reuse for the in-process transformers backend.

On a CPU, decoding one token of a 135M model is bound by reading the weights from memory, not by
arithmetic: a step for 16 conversations costs little more than a step for one. So concurrent
replies are decoded together. One worker thread owns the model and runs this loop:

1. **Admit** waiting requests into the running batch (same adapter as the batch; a request for
   another adapter waits until the batch drains, and while it waits no more requests of the
   current adapter are admitted, so nobody starves). Each admitted prompt is prefilled alone,
   starting from the longest cached prefix of an earlier prompt (the rules at the top of the system
   prompt are identical from one reply to the next), and its first token is emitted right away.
2. Its KV cache is **merged** into the batch's: left-padded to the batch length and stacked; an
   attention mask hides the padding and each row keeps its own position ids, so a row computes
   exactly what it would compute alone (up to floating-point summation order).
3. One **decode step** for every row; finished rows (end of text, token cap, or the reader closed
   the stream) leave the batch, and columns that are padding in every remaining row are trimmed.

Readers receive token ids through a queue and do the detokenising and stop-string matching in their
own thread, so the worker only runs the model.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from knowledge.errors import Unavailable

_DONE = object()  # sentinel on a request's queue: no more tokens
_ENGINES: weakref.WeakSet[BatchingEngine] = weakref.WeakSet()


@atexit.register
def _stop_all_engines() -> None:
    """Let every worker finish its current step before the interpreter shuts down.

    A daemon thread still inside a forward pass when Python finalises is torn down mid-C++ call
    ("terminate called without an active exception"); stopping the workers here avoids that.
    """
    for engine in list(_ENGINES):
        engine.stop(timeout=300.0)


@dataclass(eq=False)
class BatchRequest:
    """One reply being generated: prompt ids in, token ids out through ``out``."""

    prompt_ids: list[int]
    adapter_id: str | None
    max_new_tokens: int
    temperature: float
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.perf_counter)
    generated: int = 0
    reused_prefix: int = 0
    finish_reason: str = "length"
    last_token: int = -1
    position: int = 0  # position id of the next token to feed

    def tokens(self) -> Iterator[int]:
        """Token ids as the worker produces them; raises what the worker raised."""
        while True:
            item = self.out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> None:
        self.cancelled.set()


class PrefixCache:
    """The KV caches of the last few prompts, per adapter, for longest-common-prefix reuse.

    Entries hold the tensors of a finished prefill. Reusing one slices its tensors (views, no copy);
    the transformers cache appends by concatenation, never in place, so stored entries are never
    modified by later steps.
    """

    def __init__(self, capacity: int = 4, min_tokens: int = 16) -> None:
        self.capacity = capacity
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[str | None, tuple[int, ...]], list[tuple[Any, Any]]] = OrderedDict()

    def lookup(self, adapter_id: str | None, ids: list[int]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """(length, per-layer (keys, values) sliced to it) of the longest reusable prefix of ``ids``."""
        best, best_key = 0, None
        for key in self._entries:
            if key[0] != adapter_id:
                continue
            n = _common_prefix(key[1], ids)
            if n > best:
                best, best_key = n, key
        # at least one token must be left to prefill: its logits give the first new token
        best = min(best, len(ids) - 1)
        if best_key is None or best < self.min_tokens:
            return 0, None
        self._entries.move_to_end(best_key)
        layers = self._entries[best_key]
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in layers]

    def store(self, adapter_id: str | None, ids: list[int], layers: list[tuple[Any, Any]]) -> None:
        if self.capacity <= 0 or len(ids) < self.min_tokens:
            return
        self._entries[(adapter_id, tuple(ids))] = layers
        self._entries.move_to_end((adapter_id, tuple(ids)))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchingEngine:
    """Runs every request of a :class:`~models.generation.TransformersGenerator` in one worker thread.

    ``model_for(adapter_id)`` returns ``(model, context manager)`` to run a batch with, ``pick``
    chooses the next token from a row of logits, ``eos_ids`` end a reply, and ``lock`` is held
    around every forward pass (adapter loading takes the same lock).
    """

    def __init__(
        self,
        model_for: Callable[[str | None], tuple[Any, Any]],
        pick: Callable[[Any, float], int],
        eos_ids: set[int],
        lock: threading.RLock,
        *,
        max_batch: int = 16,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        self.model_for = model_for
        self.pick = pick
        self.eos_ids = eos_ids
        self.lock = lock
        self.max_batch = max(1, max_batch)
        self.prefix_cache = prefix_cache if prefix_cache is not None else PrefixCache()
        self._pending: list[BatchRequest] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # statistics for benchmarks and the health page
        self.steps = 0
        self.rows_decoded = 0
        self.max_rows_seen = 0
        self.prefix_tokens_reused = 0
        self.prompt_tokens = 0
        _ENGINES.add(self)

    # public -----------------------------------------------------------------------------------
    def submit(self, request: BatchRequest) -> BatchRequest:
        with self._cond:
            if self._stopping:
                raise Unavailable("The generator is shutting down.", code="generator_stopped")
            self._pending.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hybridesk-batching", daemon=True)
                self._thread.start()
            self._cond.notify()
        return request

    def clear_prefix_cache(self) -> None:
        """Forget every cached prompt (the next prompt is prefilled from scratch; for benchmarks)."""
        with self.lock:
            self.prefix_cache.clear()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # worker -----------------------------------------------------------------------------------
    def _run(self) -> None:
        batch: _Batch | None = None
        while True:
            with self._cond:
                while not self._pending and batch is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    for req in self._pending:
                        req.out.put(Unavailable("The generator is shutting down.", code="generator_stopped"))
                    self._pending.clear()
                    if batch is not None:
                        batch.fail(Unavailable("The generator is shutting down.", code="generator_stopped"))
                    return
                admit = self._take_admissible(batch)
            try:
                if batch is None and admit:
                    batch = self._new_batch(admit[0].adapter_id)
                for req in admit:
                    assert batch is not None
                    batch.admit(req)
                if batch is not None:
                    batch.drop_finished()
                    if batch.rows:
                        batch.step()
                        batch.drop_finished()
                    if not batch.rows:
                        batch = None
            except BaseException as exc:  # a failed forward pass fails every reply in the batch
                error = exc if isinstance(exc, Unavailable) else Unavailable(
                    f"Generation failed: {exc}", code="generator_failed"
                )
                for req in admit:
                    if batch is None or req not in batch.rows:
                        req.out.put(error)
                if batch is not None:
                    batch.fail(error)
                batch = None

    def _new_batch(self, adapter_id: str | None) -> _Batch:
        """A new, empty batch for ``adapter_id`` (engines over other runtimes return their own kind)."""
        return _Batch(adapter_id, self)

    def _take_admissible(self, batch: _Batch | None) -> list[BatchRequest]:
        """Pending requests that may join ``batch`` now (called with the condition held)."""
        live = [r for r in self._pending if not r.cancelled.is_set()]
        for r in self._pending:
            if r.cancelled.is_set():
                r.out.put(_DONE)
        self._pending = live
        if not live:
            return []
        adapter = batch.adapter_id if batch is not None else live[0].adapter_id
        if batch is not None and live[0].adapter_id != adapter:
            return []  # let the batch drain so the other adapter gets its turn
        room = self.max_batch - (len(batch.rows) if batch is not None else 0)
        taken = [r for r in live if r.adapter_id == adapter][: max(0, room)]
        self._pending = [r for r in live if r not in taken]
        return taken


class _Batch:
    """The rows being decoded together and their stacked KV cache."""

    def __init__(self, adapter_id: str | None, engine: BatchingEngine) -> None:
        self.adapter_id = adapter_id
        self.engine = engine
        self.rows: list[BatchRequest] = []
        self.cache: Any = None  # DynamicCache with [rows, heads, length, dim] tensors per layer
        self.mask: Any = None  # [rows, length] 1 = real token, 0 = left padding

    def _forward(self, **kwargs: Any) -> Any:
        import torch

        with self.engine.lock:
            model, context = self.engine.model_for(self.adapter_id)
            with context, torch.inference_mode():
                return model(use_cache=True, logits_to_keep=1, **kwargs)

    def admit(self, req: BatchRequest) -> None:
        import torch
        from transformers import DynamicCache

        reused, layers = self.engine.prefix_cache.lookup(req.adapter_id, req.prompt_ids)
        cache = DynamicCache(ddp_cache_data=layers) if layers is not None else DynamicCache()
        req.reused_prefix = reused
        self.engine.prefix_tokens_reused += reused
        self.engine.prompt_tokens += len(req.prompt_ids)
        ids = torch.tensor([req.prompt_ids[reused:]], dtype=torch.long)
        out = self._forward(input_ids=ids, past_key_values=cache)
        cache = out.past_key_values
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.engine.prefix_cache.store(req.adapter_id, req.prompt_ids, kv)
        req.position = len(req.prompt_ids)
        if not self._emit(req, out.logits[0, -1, :].float()):
            return  # finished on its first token: never joins the batch
        self._merge(req, kv)

    def _merge(self, req: BatchRequest, kv: list[tuple[Any, Any]]) -> None:
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        length = kv[0][0].shape[2]
        if self.cache is None:
            self.cache = DynamicCache(ddp_cache_data=kv)
            self.mask = torch.ones((1, length), dtype=torch.long)
            self.rows = [req]
            return
        current = self.mask.shape[1]
        target = max(current, length)
        for layer, (k, v) in zip(self.cache.layers, kv, strict=True):
            if target > current:
                layer.keys = F.pad(layer.keys, (0, 0, target - current, 0))
                layer.values = F.pad(layer.values, (0, 0, target - current, 0))
            layer.keys = torch.cat([layer.keys, F.pad(k, (0, 0, target - length, 0))], dim=0)
            layer.values = torch.cat([layer.values, F.pad(v, (0, 0, target - length, 0))], dim=0)
        mask = F.pad(self.mask, (target - current, 0))
        row = F.pad(torch.ones((1, length), dtype=torch.long), (target - length, 0))
        self.mask = torch.cat([mask, row], dim=0)
        self.rows.append(req)

    def step(self) -> None:
        import torch

        ids = torch.tensor([[r.last_token] for r in self.rows], dtype=torch.long)
        positions = torch.tensor([[r.position] for r in self.rows], dtype=torch.long)
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        past = self.mask.shape[1] - 1
        out = self._forward(
            input_ids=ids,
            past_key_values=self.cache,
            attention_mask=self.mask,
            position_ids=positions,
            cache_position=torch.tensor([past], dtype=torch.long),
        )
        self.cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        self.engine.steps += 1
        self.engine.rows_decoded += len(self.rows)
        self.engine.max_rows_seen = max(self.engine.max_rows_seen, len(self.rows))
        for i, req in enumerate(self.rows):
            req.position += 1
            self._emit(req, logits[i : i + 1])

    def _emit(self, req: BatchRequest, logits: Any) -> bool:
        """Pick ``req``'s next token and hand it over; False once the reply is finished."""
        if req.cancelled.is_set():
            req.finish_reason = "stop"
            req.out.put(_DONE)
            return False
        token = self.engine.pick(logits.reshape(1, -1), req.temperature)
        if token in self.engine.eos_ids:
            req.finish_reason = "stop"
            req.out.put(_DONE)
            return False
        req.generated += 1
        req.last_token = token
        req.out.put(token)
        if req.generated >= req.max_new_tokens:
            req.finish_reason = "length"
            req.out.put(_DONE)
            return False
        return True

    def drop_finished(self) -> None:
        """Remove rows that are done or whose reader left; trim all-padding columns."""
        import torch

        keep = [i for i, r in enumerate(self.rows) if _is_live(r)]
        for i, r in enumerate(self.rows):
            if i not in keep and r.cancelled.is_set():
                r.out.put(_DONE)  # harmless if the reader already has its _DONE
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(keep, dtype=torch.long)
        self.mask = self.mask.index_select(0, index)
        # columns that are padding for every remaining row can go
        real = self.mask.any(dim=0).nonzero()
        start = int(real[0]) if len(real) else 0
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]

    def fail(self, error: BaseException) -> None:
        for req in self.rows:
            req.out.put(error)
        self.rows, self.cache, self.mask = [], None, None


def _is_live(req: BatchRequest) -> bool:
    return not req.cancelled.is_set() and req.finish_reason == "length" and req.generated < req.max_new_tokens

