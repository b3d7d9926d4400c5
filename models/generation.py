"""Generation backends behind one interface.

Every backend streams text pieces and, once the stream ends, exposes a :class:`GenerationResult`
with the token counts, duration, model id and adapter id, so the caller can log every model call
(prompt, output, adapter, latency, tokens).

* :class:`TransformersGenerator` - in process: transformers + peft, a manual greedy/sampling
  decode loop over the KV cache (no per-step ``generate`` overhead), LoRA adapters loaded by id and
  switched without reloading the base model; one lock serialises calls.
* :class:`OpenAICompatibleGenerator` - any server speaking ``/v1/chat/completions`` with SSE
  streaming (vLLM, llama.cpp's server); a LoRA adapter is addressed as the model name.
* :class:`ScriptedGenerator` - a fake for tests: ``enqueue()`` replies, it streams them word by word
  and records every call.

Usage::

    stream = generator.stream(messages, adapter_id="v1")
    for piece in stream:
        send(piece)
    log(stream.result)          # GenerationResult, set when the stream is exhausted

    result = generator.generate(messages)   # the same, collected
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from knowledge.errors import HybrideskError, InvalidInput, NotFound, Unavailable
from models.prompting import MAX_NEW_TOKENS

log = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, str]]


@dataclass
class GenerationResult:
    """One finished model call, ready to be logged."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    model_id: str
    adapter_id: str | None
    finish_reason: str  # "stop" (EOS or stop string), "length" (hit max_new_tokens), "error"
    first_token_s: float | None = None
    prompt: str | None = None  # the rendered prompt, when the backend renders one

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TextStream(Iterator[str]):
    """An iterator of text pieces; ``result`` is filled in when it is exhausted (or fails)."""

    def __init__(self, pieces: Iterator[str], finish: Callable[[], GenerationResult]) -> None:
        self._pieces = pieces
        self._finish = finish
        self.result: GenerationResult | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._pieces)
        except StopIteration:
            if self.result is None:
                self.result = self._finish()
            raise

    def close(self) -> None:
        """Stop early (releases the backend's lock); ``result`` keeps what was produced."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
        if self.result is None:
            self.result = self._finish()


@runtime_checkable
class Generator(Protocol):
    """What the conversation manager needs from a language model."""

    model_id: str

    def stream(
        self,
        messages: Messages,
        *,
        adapter_id: str | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> TextStream: ...

    def generate(
        self,
        messages: Messages,
        *,
        adapter_id: str | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> GenerationResult: ...


@dataclass
class _CallState:
    """Counters a backend's ``_stream`` fills while it runs."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    prompt: str | None = None
    first_token_at: float | None = None
    pieces: list[str] = field(default_factory=list)


class BaseGenerator:
    """Public ``stream``/``generate`` time and count; subclasses implement ``_stream``."""

    model_id: str = "model"

    def stream(
        self,
        messages: Messages,
        *,
        adapter_id: str | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> TextStream:
        """Stream the reply to ``messages`` as text pieces (see the module docstring)."""
        if not messages:
            raise InvalidInput("Cannot generate from an empty message list.", code="empty_prompt")
        if max_new_tokens < 1:
            raise InvalidInput("max_new_tokens must be at least 1.", code="bad_max_new_tokens")
        state = _CallState()
        started = time.perf_counter()
        inner = self._stream(
            messages,
            state,
            adapter_id=adapter_id,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop=list(stop or []),
        )

        def pieces() -> Iterator[str]:
            try:
                for piece in inner:
                    if not piece:
                        continue
                    if state.first_token_at is None:
                        state.first_token_at = time.perf_counter()
                    state.pieces.append(piece)
                    yield piece
            except BaseException:
                state.finish_reason = "error"
                raise
            finally:
                inner.close()

        def finish() -> GenerationResult:
            return GenerationResult(
                text="".join(state.pieces),
                prompt_tokens=state.prompt_tokens,
                completion_tokens=state.completion_tokens,
                duration_s=time.perf_counter() - started,
                model_id=self.model_id,
                adapter_id=adapter_id,
                finish_reason=state.finish_reason,
                first_token_s=None if state.first_token_at is None else state.first_token_at - started,
                prompt=state.prompt,
            )

        return TextStream(pieces(), finish)

    def generate(
        self,
        messages: Messages,
        *,
        adapter_id: str | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
    ) -> GenerationResult:
        """The whole reply at once, with counts and duration."""
        stream = self.stream(
            messages, adapter_id=adapter_id, max_new_tokens=max_new_tokens, temperature=temperature, stop=stop
        )
        for _ in stream:
            pass
        assert stream.result is not None
        return stream.result

    def _stream(
        self,
        messages: Messages,
        state: _CallState,
        *,
        adapter_id: str | None,
        max_new_tokens: int,
        temperature: float,
        stop: list[str],
    ) -> Iterator[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class _StopMatcher:
    """Holds back text that could be the start of a stop string, cuts at a full match."""

    def __init__(self, stop: list[str]) -> None:
        self.stop = [s for s in stop if s]
        self.buffer = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if not self.stop:
            return text
        self.buffer += text
        cut = min((i for i in (self.buffer.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer, self.hit = self.buffer[:cut], "", True
            return out
        hold = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(out) :]
        return out

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class _Detokenizer:
    """Token ids in, text pieces out: holds back partial UTF-8 characters and stop-string prefixes."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.matcher = _StopMatcher(stop)
        self.ids: list[int] = []
        self.emitted = ""

    @property
    def stopped(self) -> bool:
        return self.matcher.hit

    def feed(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a partial UTF-8 character: wait for the rest
            return ""
        piece, self.emitted = text[len(self.emitted) :], text
        return self.matcher.feed(piece)

    def finish(self) -> str:
        """What is still held back once generation ends (nothing after a stop string)."""
        if self.matcher.hit:
            return ""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        return self.matcher.feed(text[len(self.emitted) :]) + self.matcher.flush()


# --------------------------------------------------------------------------------------------
# scripted fake
# --------------------------------------------------------------------------------------------


class ScriptedGenerator(BaseGenerator):
    """A fake generator for unit tests (fakes over mocks).

    ``enqueue(text)`` queues a reply; each call pops one and streams it word by word. Every call is
    recorded in ``calls`` (messages, adapter_id, max_new_tokens, temperature, stop). ``fail_after``
    makes a queued reply raise :class:`Unavailable` after that many pieces, to exercise failures
    mid-stream. With an empty queue the ``default`` reply is used, or an error is raised.
    """

    def __init__(
        self, replies: Sequence[str] = (), *, default: str | None = None, model_id: str = "scripted"
    ):
        self.model_id = model_id
        self.default = default
        self.calls: list[dict[str, Any]] = []
        self._queue: deque[tuple[str, int | None]] = deque((r, None) for r in replies)
        self._lock = threading.Lock()

    def enqueue(self, text: str, *, fail_after: int | None = None) -> ScriptedGenerator:
        with self._lock:
            self._queue.append((text, fail_after))
        return self

    def _stream(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        with self._lock:
            self.calls.append(
                {
                    "messages": [dict(m) for m in messages],
                    "adapter_id": adapter_id,
                    "max_new_tokens": max_new_tokens,
                    "temperature": temperature,
                    "stop": list(stop),
                }
            )
            if self._queue:
                text, fail_after = self._queue.popleft()
            elif self.default is not None:
                text, fail_after = self.default, None
            else:
                raise HybrideskError("ScriptedGenerator has no reply queued; call enqueue() first.")
        state.prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        state.prompt = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)
        matcher = _StopMatcher(stop)
        words = re.findall(r"\S+\s*|\s+", text)
        state.finish_reason = "stop"
        for i, word in enumerate(words):
            if fail_after is not None and i >= fail_after:
                raise Unavailable("scripted failure mid-stream", code="generator_failed")
            if i >= max_new_tokens:
                state.finish_reason = "length"
                break
            state.completion_tokens += 1
            out = matcher.feed(word)
            if out:
                yield out
            if matcher.hit:
                return
        rest = matcher.flush()
        if rest:
            yield rest


# --------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP server
# --------------------------------------------------------------------------------------------


class OpenAICompatibleGenerator(BaseGenerator):
    """A server with ``/v1/chat/completions`` (vLLM, llama.cpp server, ...), streamed over SSE.

    The adapter id is sent as the ``model`` name (how vLLM's ``--lora-modules name=path`` and
    llama.cpp's LoRA routing address adapters); with no adapter, ``model`` is used. Token counts
    come from the server's ``usage`` (requested with ``stream_options.include_usage``); when a
    server sends none they are estimated (~4 characters per token).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        transport: Any = None,
    ) -> None:
        import httpx

        root = base_url.rstrip("/")
        self.endpoint = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model_id = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def close(self) -> None:
        self._client.close()

    def _stream(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        import httpx

        body: dict[str, Any] = {
            "model": adapter_id or self.model_id,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stop:
            body["stop"] = list(stop)
        usage: dict[str, Any] = {}
        finish = None
        produced = []
        try:
            with self._client.stream("POST", self.endpoint, json=body) as response:
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    if response.status_code == 404:
                        raise NotFound(
                            f"The generation server has no model {body['model']!r} ({detail}).",
                            code="unknown_model",
                        )
                    raise Unavailable(
                        f"The generation server answered {response.status_code}: {detail}",
                        code="generator_failed",
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        continue
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            produced.append(piece)
                            yield piece
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"Cannot reach the generation server at {self.endpoint}: {exc}. Check "
                "HYBRIDESK_OPENAI_BASE_URL and that the server is running.",
                code="generator_unreachable",
            ) from exc
        text = "".join(produced)
        prompt_chars = sum(len(m["content"]) for m in messages)
        state.prompt_tokens = int(usage.get("prompt_tokens") or max(1, prompt_chars // 4))
        state.completion_tokens = int(usage.get("completion_tokens") or max(0, len(text) // 4))
        state.finish_reason = "length" if finish == "length" else "stop"


# --------------------------------------------------------------------------------------------
# in-process transformers + peft
# --------------------------------------------------------------------------------------------


def _adapter_roots(adapters_root: Path | str | Sequence[Path | str] | None) -> list[Path]:
    if adapters_root is None:
        return []
    if isinstance(adapters_root, str | Path):
        return [Path(adapters_root)]
    return [Path(p) for p in adapters_root]


def find_adapter(adapter_id: str, registered: Mapping[str, Path], roots: Sequence[Path]) -> Path:
    """Folder of ``adapter_id``: registered by id, an absolute path, or ``<root>/<adapter_id>``."""
    if adapter_id in registered:
        return registered[adapter_id]
    candidate = Path(adapter_id)
    if candidate.is_absolute() and (candidate / "adapter_config.json").is_file():
        return candidate
    for root in roots:
        path = root / adapter_id
        if (path / "adapter_config.json").is_file():
            return path
    raise NotFound(
        f"Adapter {adapter_id!r} not found in {[str(r) for r in roots]}; "
        "run `hybridesk adapters list` to see the available ones.",
        code="adapter_not_found",
    )


def stream_through_engine(
    engine: Any, tokenizer: Any, messages: Messages, state: _CallState, *,
    adapter_id: str | None, max_new_tokens: int, temperature: float, stop: list[str],
) -> Iterator[str]:
    """Render ``messages``, submit them to a batching ``engine`` and stream the decoded reply."""
    from models.batching import BatchRequest
    from models.prompting import render_prompt

    prompt = render_prompt(tokenizer, messages)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    state.prompt = prompt
    state.prompt_tokens = len(ids)
    request = engine.submit(BatchRequest(list(ids), adapter_id, max_new_tokens, temperature))
    detok = _Detokenizer(tokenizer, stop)
    try:
        for token in request.tokens():
            state.completion_tokens += 1
            out_text = detok.feed(token)
            if out_text:
                yield out_text
            if detok.stopped:
                break
    finally:
        request.cancel()  # a no-op when finished; frees the row when the reader left early
    state.finish_reason = "stop" if detok.stopped else request.finish_reason
    tail = detok.finish()
    if tail:
        yield tail


def adapter_files_stamp(adapter_dir: Path) -> tuple[Any, ...]:
    """What the adapter folder's config and weights files are on disk now (path, size, mtime, inode), or None
    for a missing one: a change means the weights may have changed."""
    out: list[Any] = [str(adapter_dir)]
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        try:
            st = (adapter_dir / name).stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
    return tuple(out)


class LocalAdapters:
    """Adapter folders by id for the in-process backends (which define ``load`` and ``_ensure_adapter``).

    An adapter id is registered with :meth:`add_adapter`, an absolute folder path, or a folder name
    under one of ``adapter_roots``.
    """

    _adapters: dict[str, Path]
    _loaded_from: dict[str, tuple[Any, str]]  # adapter id -> (files stamp, fingerprint) of what is loaded
    adapter_roots: list[Path]
    _lock: Any
    _tokenizer: Any
    engine: Any

    def load(self) -> None:  # pragma: no cover - provided by the backend
        raise NotImplementedError

    def _ensure_adapter(self, adapter_id: str) -> None:  # pragma: no cover - provided by the backend
        raise NotImplementedError

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tokenizer

    def adapter_path(self, adapter_id: str) -> Path:
        """Folder of ``adapter_id``: an explicit path, or ``<root>/<adapter_id>`` in the roots."""
        return find_adapter(adapter_id, self._adapters, self.adapter_roots)

    def add_adapter(self, adapter_id: str, path: Path | str) -> None:
        """Register (and load) an adapter folder under ``adapter_id``."""
        with self._lock:
            self._adapters[adapter_id] = Path(path)
            self._ensure_adapter(adapter_id)

    def _files_to_load(self, adapter_id: str, path: Path, loaded: tuple[Any, str] | None) -> tuple[Any, str] | None:
        """``(files stamp, fingerprint)`` of ``path`` when ``adapter_id`` must be loaded (``loaded`` is None: not
        yet) or loaded again (its weights changed on disk); None when what is loaded is current."""
        from models.gguf_lora import adapter_fingerprint

        stamp = adapter_files_stamp(path)
        if loaded is not None and loaded[0] == stamp:
            return None  # the files are as they were (a stat per reply: nothing is read)
        fingerprint = adapter_fingerprint(path)
        if loaded is not None and loaded[1] == fingerprint:
            self._loaded_from[adapter_id] = (stamp, fingerprint)  # touched or copied again, same weights
            return None
        return stamp, fingerprint

    def warm(self, adapter_id: str | None = None) -> None:
        """Load the model and, if given, the adapter now rather than on the first reply."""
        with self._lock:
            self.load()
            if adapter_id is not None:
                self._ensure_adapter(adapter_id)

    def _stream_engine(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        """Stream through the backend's batching ``engine`` (a missing adapter fails in the caller)."""
        with self._lock:
            self.load()
            if adapter_id is not None:
                self._ensure_adapter(adapter_id)
        yield from stream_through_engine(
            self.engine, self._tokenizer, messages, state, adapter_id=adapter_id,
            max_new_tokens=max_new_tokens, temperature=temperature, stop=stop,
        )


class TransformersGenerator(LocalAdapters, BaseGenerator):
    """In-process generation with transformers + peft.

    ``model_dir`` is a local HF causal LM folder (see :func:`models.base.ensure_base_model`).
    ``adapters_root`` is one folder or a list of folders holding adapter versions
    (``<root>/<adapter_id>/adapter_config.json``); adapters are loaded on first use and kept, so
    switching between them (or back to the base model, ``adapter_id=None``) costs nothing.
    ``model``/``tokenizer`` may be passed to share an already loaded base model. ``dtype`` defaults
    to float32 on CPUs without native bf16 (3-4x faster there) and bf16 otherwise.

    With ``max_batch > 0`` (the default, 16) calls go through a :class:`models.batching.BatchingEngine`:
    concurrent replies are decoded together in one batch and each prompt reuses the KV cache of the
    longest matching prefix among the last ``prefix_cache_size`` prompts. ``max_batch=0`` runs each
    call alone in the caller's thread under one lock (the plain KV-cache loop, kept as a baseline).
    """

    def __init__(
        self,
        model_dir: Path | str | None,
        adapters_root: Path | str | Sequence[Path | str] | None = None,
        *,
        dtype: Any = None,
        num_threads: int | None = None,
        model: Any = None,
        tokenizer: Any = None,
        model_id: str | None = None,
        max_batch: int = 16,
        prefix_cache_size: int = 4,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.max_batch = max_batch
        self.prefix_cache_size = prefix_cache_size
        self._engine: Any = None  # BatchingEngine, created on the first batched call
        self.adapter_roots = _adapter_roots(adapters_root)
        self.dtype = dtype
        self.num_threads = num_threads
        self.model_id = model_id or (self.model_dir.name if self.model_dir else "model")
        self._model = model
        self._tokenizer = tokenizer
        self._peft: Any = None  # PeftModel wrapper once the first adapter is loaded
        self._adapters: dict[str, Path] = {}
        self._loaded_from: dict[str, tuple[Any, str]] = {}  # adapter id -> (files stamp, fingerprint) loaded
        self._lock = threading.RLock()
        self._eos_ids: set[int] = set()
        if model is not None and tokenizer is not None:
            self._prepare()

    # loading ---------------------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the base model now (otherwise it loads on the first call)."""
        with self._lock:
            if self._model is not None:
                return
            if self.model_dir is None:
                raise Unavailable("No base model folder configured.", code="model_not_loaded")
            from models.base import default_inference_dtype, load_base_model

            self._model, self._tokenizer = load_base_model(
                self.model_dir, self.dtype or default_inference_dtype(), num_threads=self.num_threads
            )
            self._prepare()

    def _prepare(self) -> None:
        tok = self._tokenizer
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        for token in (tok.eos_token, "<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            if token is None:
                continue
            tid = tok.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                self._eos_ids.add(tid)
        if tok.eos_token_id is not None:
            self._eos_ids.add(int(tok.eos_token_id))

    @property
    def model(self) -> Any:
        """The model calls go through (the PeftModel once an adapter is loaded)."""
        self.load()
        return self._peft if self._peft is not None else self._model

    def _ensure_adapter(self, adapter_id: str) -> None:
        """Load ``adapter_id``, or load it again when its files changed since: an adapter retrained or copied
        in under the same id answers with its new weights (as the llama.cpp backend does)."""
        self.load()
        path = self.adapter_path(adapter_id)
        loaded = self._loaded_from.get(adapter_id) if self._peft is not None and adapter_id in self._peft.peft_config \
            else None
        if (files := self._files_to_load(adapter_id, path, loaded)) is None:
            return
        stamp, fingerprint = files
        from peft import PeftModel

        if self._peft is None:
            self._peft = PeftModel.from_pretrained(
                self._model, str(path), adapter_name=adapter_id, is_trainable=False
            )
        else:
            if loaded is not None:
                log.info("adapter %s changed on disk (%s, was %s): loading its new weights", adapter_id,
                         fingerprint, loaded[1])
                self._peft.delete_adapter(adapter_id)
                if self._engine is not None:
                    self._engine.clear_prefix_cache()  # cached prompts computed with the old weights
            self._peft.load_adapter(str(path), adapter_name=adapter_id, is_trainable=False)
        self._peft.eval()
        self._adapters[adapter_id] = path
        self._loaded_from[adapter_id] = (stamp, fingerprint)

    def loaded_adapters(self) -> list[str]:
        return [] if self._peft is None else list(self._peft.peft_config)

    # decoding --------------------------------------------------------------------------------
    def _model_for(self, adapter_id: str | None) -> tuple[Any, Any]:
        """The model to run with ``adapter_id`` active, and the context to run it in (lock held)."""
        import contextlib

        if adapter_id is not None:
            if self._peft is None or adapter_id not in self._peft.peft_config:
                self._ensure_adapter(adapter_id)  # (a changed adapter is reloaded per reply, not per step)
            if self._peft.active_adapter != adapter_id:
                self._peft.set_adapter(adapter_id)
            return self._peft, contextlib.nullcontext()
        if self._peft is not None:
            return self._peft, self._peft.disable_adapter()
        return self._model, contextlib.nullcontext()

    @property
    def engine(self) -> Any:
        """The batching engine (created on first use)."""
        from models.batching import BatchingEngine, PrefixCache

        with self._lock:
            if self._engine is None:
                self.load()
                self._engine = BatchingEngine(
                    self._model_for,
                    self._pick,
                    self._eos_ids,
                    self._lock,
                    max_batch=self.max_batch,
                    prefix_cache=PrefixCache(self.prefix_cache_size),
                )
            return self._engine

    def close(self) -> None:
        """Stop the batching worker (pending replies fail with a clear error); a later call starts a new one."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop()

    def _stream(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        if self.max_batch > 0:
            return self._stream_batched(
                messages, state, adapter_id=adapter_id, max_new_tokens=max_new_tokens,
                temperature=temperature, stop=stop,
            )
        return self._stream_alone(
            messages, state, adapter_id=adapter_id, max_new_tokens=max_new_tokens,
            temperature=temperature, stop=stop,
        )

    def _stream_batched(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        return self._stream_engine(
            messages, state, adapter_id=adapter_id, max_new_tokens=max_new_tokens,
            temperature=temperature, stop=stop,
        )

    def _stream_alone(self, messages, state, *, adapter_id, max_new_tokens, temperature, stop):
        import contextlib

        import torch

        from models.prompting import render_prompt

        with self._lock:
            self.load()
            if adapter_id is not None:
                self._ensure_adapter(adapter_id)
                self._peft.set_adapter(adapter_id)
                model = self._peft
                context: Any = contextlib.nullcontext()
            elif self._peft is not None:
                model = self._peft
                context = self._peft.disable_adapter()
            else:
                model = self._model
                context = contextlib.nullcontext()
            tok = self._tokenizer
            prompt = render_prompt(tok, messages)
            state.prompt = prompt
            ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            state.prompt_tokens = int(ids.shape[1])
            device = next(self._model.parameters()).device
            ids = ids.to(device)
            detok = _Detokenizer(tok, stop)
            state.finish_reason = "length"
            with context, torch.inference_mode():
                from transformers import DynamicCache

                cache = DynamicCache()
                step_input = ids
                for _ in range(max_new_tokens):
                    out = model(input_ids=step_input, past_key_values=cache, use_cache=True, logits_to_keep=1)
                    cache = out.past_key_values
                    logits = out.logits[:, -1, :].float()
                    next_id = self._pick(logits, temperature)
                    if next_id in self._eos_ids:
                        state.finish_reason = "stop"
                        break
                    state.completion_tokens += 1
                    step_input = torch.tensor([[next_id]], device=device)
                    out_text = detok.feed(next_id)
                    if out_text:
                        yield out_text
                    if detok.stopped:
                        state.finish_reason = "stop"
                        break
            tail = detok.finish()
            if tail:
                yield tail

    @staticmethod
    def _pick(logits: Any, temperature: float) -> int:
        import torch

        if temperature <= 0:
            return int(torch.argmax(logits, dim=-1)[0])
        probs = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1)[0, 0])
